import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { makeActivationBatch } from '../src/arrow/activation-batch.js';
import { activationStore, type TrainingBatch } from '../src/stages/store/activation-store.js';
import { MixingBuffer } from '../src/stages/store/mixing-buffer.js';
import { concatBlocks, gatherFromBlocks, gatherRows } from '../src/stages/store/row-block.js';
import { Mulberry32 } from '../src/util/random.js';

const BOS = 50256;

/** Activation batches whose rows encode their global row id: a[r] = [id, id], b[r] = [-id, 0, 1]. */
function batches(count: number, rows: number, bosEvery = 0) {
  const out = [];
  for (let k = 0; k < count; k++) {
    const a = new Float32Array(rows * 2);
    const b = new Float32Array(rows * 3);
    const token = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      const id = k * rows + r + 1;
      a.set([id, id], r * 2);
      b.set([-id, 0, 1], r * 3);
      token[r] = bosEvery && r % bosEvery === 0 ? BOS : 7;
    }
    out.push(
      makeActivationBatch({
        seq: Array.from({ length: rows }, () => k),
        pos: Int32Array.from({ length: rows }, (_, i) => i),
        token,
        hooks: { a: { data: a, d: 2 }, b: { data: b, d: 3 } },
      }),
    );
  }
  return out;
}

const ids = (b: TrainingBatch) =>
  Array.from({ length: b.rows }, (_, r) => (b.hooks.a as Float32Array)[r * 2] as number);

async function serve(opts: Partial<Parameters<typeof activationStore>[0]>, input = batches(10, 64)) {
  return lastValueFrom(
    from(input).pipe(
      activationStore({ hooks: ['a', 'b'], trainBatchSizeTokens: 32, nBatchesInBuffer: 4, seed: 1, ...opts }),
      toArray(),
    ),
  );
}

describe('mixing buffer', () => {
  it('serves half of a full buffer, shuffled, and keeps the other half', () => {
    const widths = { a: 1 };
    const buf = new MixingBuffer(widths, 100, 10, new Mulberry32(3));
    const block = (start: number, n: number) => ({
      rows: n,
      hooks: { a: Float32Array.from({ length: n }, (_, i) => start + i) },
    });
    expect(buf.push(block(0, 60))).toEqual([]);
    const served = buf.push(block(60, 60));
    expect(served).toHaveLength(6); // floor(120 / (2 * 10)) batches of 10
    expect(buf.rows).toBe(60);
    const values = served.flatMap((b) => Array.from(b.hooks.a as Float32Array));
    expect(new Set(values).size).toBe(60);
    expect(values).not.toEqual([...values].sort((x, y) => x - y));
    const rest = buf.finish().flatMap((b) => Array.from(b.hooks.a as Float32Array));
    expect([...values, ...rest].sort((x, y) => x - y)).toEqual(Array.from({ length: 120 }, (_, i) => i));
  });
});

describe('activation store', () => {
  it('serves every row exactly once in full batches, hooks kept aligned', async () => {
    const out = await serve({});
    expect(out.every((b) => b.rows === 32)).toBe(true);
    expect(out.map((b) => b.index)).toEqual(out.map((_, i) => i));
    const all = out.flatMap(ids);
    expect(all).toHaveLength(640);
    expect(new Set(all).size).toBe(640);
    for (const batch of out) {
      for (let r = 0; r < batch.rows; r++) {
        const id = (batch.hooks.a as Float32Array)[r * 2] as number;
        expect((batch.hooks.a as Float32Array)[r * 2 + 1]).toBe(id);
        expect(Array.from((batch.hooks.b as Float32Array).subarray(r * 3, r * 3 + 3))).toEqual([-id, 0, 1]);
      }
    }
  });

  it('is deterministic for a seed and differs across seeds', async () => {
    const one = (await serve({ seed: 5 })).flatMap(ids);
    const again = (await serve({ seed: 5 })).flatMap(ids);
    const other = (await serve({ seed: 6 })).flatMap(ids);
    expect(again).toEqual(one);
    expect(other).not.toEqual(one);
  });

  it('mixes tokens from across the stream within a batch', async () => {
    const out = await serve({});
    // Rows come from batches of 64 consecutive ids; a shuffled batch of 32 spans several of them.
    const spans = out.slice(0, 5).map((b) => new Set(ids(b).map((id) => Math.floor((id - 1) / 64))).size);
    expect(Math.min(...spans)).toBeGreaterThan(1);
  });

  it('drops excluded (BOS) tokens', async () => {
    const out = await serve({ excludeTokenIds: [BOS] }, batches(10, 64, 8));
    const all = out.flatMap(ids);
    expect(all.some((id) => ((id - 1) % 64) % 8 === 0)).toBe(false);
    expect(all.length).toBeGreaterThan(500);
  });

  it('expected_average_only_in scales to mean norm sqrt(d) and reports the factor', async () => {
    let reported: Record<string, number> | undefined;
    const out = await serve({
      normalizeActivations: 'expected_average_only_in',
      nBatchesForNormEstimate: 20,
      onScalingFactors: (f) => (reported = f),
    });
    // All 640 rows are in the estimate: mean of ‖a‖ = sqrt(2)·mean(id), ‖b‖ = sqrt(id² + 1).
    const meanA = (Math.SQRT2 * (640 * 641)) / 2 / 640;
    expect(reported?.a).toBeCloseTo(Math.SQRT2 / meanA, 6);
    let meanB = 0;
    for (let id = 1; id <= 640; id++) meanB += Math.sqrt(id * id + 1) / 640;
    expect(reported?.b).toBeCloseTo(Math.sqrt(3) / meanB, 6);
    let norm = 0;
    let rows = 0;
    for (const b of out) {
      expect(b.scalingFactors).toEqual(reported);
      for (let r = 0; r < b.rows; r++) {
        norm += Math.hypot(...(b.hooks.a as Float32Array).subarray(r * 2, r * 2 + 2));
        rows++;
      }
    }
    expect(norm / rows).toBeCloseTo(Math.SQRT2, 4);
  });

  it('names a hook that is not in the activations', async () => {
    await expect(serve({ hooks: ['a', 'blocks.0.hook_resid_pre'] })).rejects.toThrow(
      /hook blocks\.0\.hook_resid_pre is not in the activations; they hold a, b/,
    );
  });

  it('rejects bad options when built', () => {
    expect(() =>
      activationStore({ hooks: ['a'], trainBatchSizeTokens: 0, nBatchesInBuffer: 4, seed: 0 }),
    ).toThrow(/train_batch_size_tokens/);
    expect(() =>
      activationStore({ hooks: ['a'], trainBatchSizeTokens: 8, nBatchesInBuffer: 1, seed: 0 }),
    ).toThrow(/n_batches_in_buffer/);
  });

  it('constant_norm_rescale and layer_norm normalise each served token', async () => {
    const rescaled = await serve({ normalizeActivations: 'constant_norm_rescale' });
    for (const b of rescaled.slice(0, 3)) {
      for (let r = 0; r < b.rows; r++) {
        expect(Math.hypot(...(b.hooks.b as Float32Array).subarray(r * 3, r * 3 + 3))).toBeCloseTo(
          Math.sqrt(3),
          4,
        );
      }
    }
    const normed = await serve({ normalizeActivations: 'layer_norm' });
    for (const b of normed.slice(0, 3)) {
      for (let r = 0; r < b.rows; r++) {
        const row = Array.from((b.hooks.b as Float32Array).subarray(r * 3, r * 3 + 3));
        const mean = row.reduce((a, v) => a + v, 0) / 3;
        const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / 3;
        expect(mean).toBeCloseTo(0, 5);
        expect(variance).toBeCloseTo(1, 3);
      }
    }
  });
});

describe('gatherFromBlocks', () => {
  it('gathers the rows of the concatenation without making it', () => {
    const widths = { a: 3, b: 2 };
    const block = (rows: number, base: number) => ({
      rows,
      hooks: {
        a: Float32Array.from({ length: rows * 3 }, (_, i) => base + i),
        b: Float32Array.from({ length: rows * 2 }, (_, i) => -base - i),
      },
    });
    const blocks = [block(4, 0), block(0, 100), block(3, 200), block(5, 300)];
    const order = Uint32Array.from([11, 0, 5, 4, 3, 10, 1, 7, 2, 9, 6, 8]);
    const want = gatherRows(concatBlocks(blocks, widths), widths, order.subarray(3, 9));
    const got = gatherFromBlocks(blocks, widths, order, 3, 9);
    expect(got.rows).toBe(6);
    expect(got.hooks).toEqual(want.hooks);
  });
});
