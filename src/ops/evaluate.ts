/**
 * Runs a computation written on the op layer with host inputs and returns host outputs, on either
 * backend: as a one-off ONNX graph in onnxruntime, or eagerly on TensorFlow.js. Engines keep their
 * sessions and tensors between calls and do not use this; it serves tests, small one-off computations and
 * the agreement checks between the backends.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TensorElemType, encodeOnnxModel } from '../engine/onnx/onnx-proto.js';
import { loadOrt } from '../engine/onnx/ort.js';
import { onnxSessionOptions } from '../engine/onnx/session-options.js';
import { OnnxOps } from './onnx-ops.js';
import type { Ops } from './ops.js';
import { TfjsOps } from './tfjs-ops.js';

export interface HostArray {
  shape: number[];
  /** Float32Array for float inputs; Int32Array for ids; BigInt64Array for graph int64 inputs (TopK's k). */
  data: Float32Array | Int32Array | BigInt64Array;
}

/** An output: float32 (masks and values alike). */
export interface HostResult {
  shape: number[];
  data: Float32Array;
}

/** A computation over named inputs returning named outputs, for any backend. */
export type OpsProgram = <T>(o: Ops<T>, inputs: Record<string, T>) => Record<string, T>;

function elemTypeOf(a: HostArray): TensorElemType {
  if (a.data instanceof Int32Array) return TensorElemType.INT32;
  if (a.data instanceof BigInt64Array) return TensorElemType.INT64;
  return TensorElemType.FLOAT;
}

export async function evaluateOnnx(
  program: OpsProgram,
  inputs: Record<string, HostArray>,
): Promise<Record<string, HostResult>> {
  const o = new OnnxOps();
  const names: Record<string, string> = {};
  for (const [name, a] of Object.entries(inputs)) names[name] = o.input(name, a.shape, elemTypeOf(a));
  const out = program(o, names);
  for (const [name, value] of Object.entries(out)) o.output(value, `out.${name}`);
  const model = o.model('evaluate');
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(
    encodeOnnxModel(model),
    onnxSessionOptions({ threads: 1 }),
  );
  try {
    const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
    for (const [name, a] of Object.entries(inputs)) {
      const type =
        a.data instanceof Int32Array ? 'int32' : a.data instanceof BigInt64Array ? 'int64' : 'float32';
      feeds[name] = new ort.Tensor(type, a.data, a.shape);
    }
    const results = await session.run(feeds);
    const host: Record<string, HostResult> = {};
    for (const name of Object.keys(out)) {
      const t = results[`out.${name}`]!;
      host[name] = { shape: [...t.dims], data: Float32Array.from(t.data as Float32Array) };
    }
    return host;
  } finally {
    await session.release();
  }
}

export function evaluateTfjs(
  program: OpsProgram,
  inputs: Record<string, HostArray>,
): Record<string, HostResult> {
  const o = new TfjsOps();
  let out: Record<string, tf.Tensor> = {};
  try {
    out = tf.tidy(() => {
      const values: Record<string, tf.Tensor> = {};
      for (const [name, a] of Object.entries(inputs)) {
        const data = a.data instanceof BigInt64Array ? Int32Array.from(a.data, Number) : a.data;
        values[name] = tf.tensor(data, a.shape, data instanceof Int32Array ? 'int32' : 'float32');
      }
      return program(o, values);
    });
    const host: Record<string, HostResult> = {};
    for (const [name, t] of Object.entries(out)) {
      host[name] = { shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) };
    }
    return host;
  } finally {
    for (const t of Object.values(out)) t.dispose();
    o.dispose();
  }
}
