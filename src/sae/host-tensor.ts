/** A float32 tensor in host memory: a shape and its row-major values. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

export function copy(t: HostTensor): HostTensor {
  return { shape: [...t.shape], data: Float32Array.from(t.data) };
}

/** A new tensor of `fn` applied to every value. */
export function mapped(t: HostTensor, fn: (v: number) => number): HostTensor {
  return { shape: [...t.shape], data: Float32Array.from(t.data, fn) };
}
