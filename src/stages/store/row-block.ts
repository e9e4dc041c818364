/**
 * Rows of activations for several hooks of the same tokens, as contiguous float32 matrices
 * (`hooks[name]` is row-major [rows, widths[name]]). Every operation keeps the hooks' rows aligned,
 * which is what lets a transcoder's input and output activations be shuffled together.
 */
export interface RowBlock {
  readonly rows: number;
  readonly hooks: Readonly<Record<string, Float32Array>>;
}

export type HookWidths = Readonly<Record<string, number>>;

export function concatBlocks(blocks: readonly RowBlock[], widths: HookWidths): RowBlock {
  const rows = blocks.reduce((n, b) => n + b.rows, 0);
  const hooks: Record<string, Float32Array> = {};
  for (const [hook, d] of Object.entries(widths)) {
    const out = new Float32Array(rows * d);
    let offset = 0;
    for (const b of blocks) {
      out.set((b.hooks[hook] as Float32Array).subarray(0, b.rows * d), offset);
      offset += b.rows * d;
    }
    hooks[hook] = out;
  }
  return { rows, hooks };
}

/** A new block whose row i is `block`'s row `order[i]`. */
export function gatherRows(
  block: RowBlock,
  widths: HookWidths,
  order: Uint32Array | readonly number[],
): RowBlock {
  const hooks: Record<string, Float32Array> = {};
  for (const [hook, d] of Object.entries(widths)) {
    const src = block.hooks[hook] as Float32Array;
    const out = new Float32Array(order.length * d);
    for (let i = 0; i < order.length; i++) {
      const r = order[i] as number;
      out.set(src.subarray(r * d, r * d + d), i * d);
    }
    hooks[hook] = out;
  }
  return { rows: order.length, hooks };
}
