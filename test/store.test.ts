import { concat, defer, from, lastValueFrom, of, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { makeActivationBatch } from '../src/arrow/activation-batch.js';
import { activationStore, type TrainingBatch } from '../src/stages/store/activation-store.js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { writeSafetensorsSync } from '../src/io/safetensors.js';
import { UserError } from '../src/pipeline/errors.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ActivationBatch } from '../src/arrow/activation-batch.js';
import { StoreTracker } from '../src/stages/store/activation-store.js';
import { readStoreSnapshot, STORE_SNAPSHOT_FILE, writeStoreSnapshotSync } from '../src/stages/store/index.js';
import { MixingBuffer } from '../src/stages/store/mixing-buffer.js';
import { concatBlocks, gatherRows, type HookWidths, type RowBlock } from '../src/stages/store/row-block.js';
import {
  ActivationStoreCore,
  type StoreCoreOptions,
  type StoreSnapshot,
} from '../src/stages/store/store-core.js';
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

/**
 * SAELens's mixing as the store computed it before it kept rows in place: concatenate the kept rows and the
 * new ones, shuffle the concatenation, serve the first whole batches amounting to half, keep the rest.
 */
function referenceMixing(
  blocks: RowBlock[],
  widths: HookWidths,
  bufferSize: number,
  bs: number,
  seed: number,
) {
  const rng = new Mulberry32(seed);
  const permutation = (n: number) => {
    const order = Uint32Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
    return order;
  };
  let held: RowBlock[] = [];
  const served: number[][] = [];
  const take = (all: RowBlock, order: Uint32Array, n: number) => {
    for (let b = 0; b < n; b++)
      served.push(
        Array.from(gatherRows(all, widths, order.subarray(b * bs, (b + 1) * bs)).hooks.a as Float32Array),
      );
  };
  for (const block of blocks) {
    if (block.rows === 0) continue;
    held.push(block);
    const all = concatBlocks(held, widths);
    if (all.rows < bufferSize) continue;
    const order = permutation(all.rows);
    const serving = Math.max(1, Math.floor(all.rows / (2 * bs)));
    take(all, order, serving);
    held = [gatherRows(all, widths, order.subarray(serving * bs))];
  }
  const all = concatBlocks(held, widths);
  take(all, permutation(all.rows), Math.floor(all.rows / bs));
  return served;
}

describe('mixing buffer, rows kept in place', () => {
  it('serves exactly what shuffling the concatenation of kept and new rows serves', () => {
    const widths = { a: 2 };
    const rng = new Mulberry32(11);
    let next = 0;
    const blocks = Array.from({ length: 40 }, () => {
      const rows = Math.floor(rng.next() * 50);
      const data = new Float32Array(rows * 2);
      for (let r = 0; r < rows; r++) data.set([next, -next++], r * 2);
      return { rows, hooks: { a: data } };
    });
    const buf = new MixingBuffer(widths, 96, 16, new Mulberry32(4));
    const got = [...blocks.flatMap((b) => buf.push(b)), ...buf.finish()].map((b) =>
      Array.from(b.hooks.a as Float32Array),
    );
    expect(got).toEqual(referenceMixing(blocks, widths, 96, 16, 4));
  });

  it('keeps one storage array in steady state, sized by the buffer plus one input block', () => {
    const buf = new MixingBuffer({ a: 3 }, 100, 10, new Mulberry32(1));
    const block = () => ({ rows: 30, hooks: { a: new Float32Array(90).fill(1) } });
    const storage = new Set<Float32Array>();
    for (let i = 0; i < 50; i++) {
      buf.push(block());
      storage.add(buf.state().data.a as Float32Array);
    }
    expect(storage.size).toBe(1);
    expect(([...storage][0] as Float32Array).length).toBe((100 + 30 - 1) * 3);
  });

  it('copies only the rows listed in keep', () => {
    const buf = new MixingBuffer({ a: 1 }, 4, 2, new Mulberry32(1));
    const served = buf.push({ rows: 6, hooks: { a: Float32Array.from([0, 1, 2, 3, 4, 5]) } }, [1, 3, 4, 5]);
    const values = [...served, ...buf.finish()].flatMap((b) => Array.from(b.hooks.a as Float32Array));
    expect(values.sort()).toEqual([1, 3, 4, 5]);
  });
});

describe('activation store snapshots', () => {
  const base = { hooks: ['a', 'b'], trainBatchSizeTokens: 32, nBatchesInBuffer: 4, seed: 3 };
  /** Serves `input` with a consumer that has used `consumedAt(k)` batches after input batch k. */
  function runWithSnapshot(
    opts: Partial<StoreCoreOptions>,
    input: ActivationBatch[],
    at: number,
    consumedAt: (served: number) => number,
  ) {
    let consumed = 0;
    const core = new ActivationStoreCore({
      hooks: ['a', 'b'],
      trainBatchSizeTokens: 32,
      nBatchesInBuffer: 4,
      seed: 3,
      consumed: () => consumed,
      ...opts,
    });
    const served: TrainingBatch[] = [];
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-store-')), STORE_SNAPSHOT_FILE);
    let snapshot: StoreSnapshot | null = null;
    for (const [k, batch] of input.entries()) {
      served.push(...core.push(batch));
      consumed = consumedAt(served.length);
      if (k === at) {
        // Written at once, as a checkpoint does: the snapshot views arrays the next batch changes.
        snapshot = core.snapshot(consumed);
        writeStoreSnapshotSync(file, snapshot as StoreSnapshot);
      }
    }
    served.push(...core.finish());
    return { served, snapshot: snapshot as StoreSnapshot, file };
  }

  const copy = (b: TrainingBatch) => ({
    index: b.index,
    a: Array.from(b.hooks.a as Float32Array),
    b: Array.from(b.hooks.b as Float32Array),
  });

  for (const [name, opts] of [
    ['mixing', {}],
    ['BOS excluded', { excludeTokenIds: [BOS] }],
    [
      'normalisation sample pending',
      { normalizeActivations: 'expected_average_only_in', nBatchesForNormEstimate: 16 },
    ],
  ] as const) {
    it(`a restored store continues exactly, fed only the input after the snapshot (${name})`, async () => {
      const input = batches(24, 40, 5);
      // The consumer lags the store by three batches, as a trainer does behind its queue.
      const whole = runWithSnapshot(opts, input, 9, (n) => Math.max(0, n - 3));
      const snap = await readStoreSnapshot(whole.file);
      expect(snap.inputBatches).toBe(10);
      expect(snap.inputRows).toBe(400);
      // What makes each case: batches waiting for the consumer, or the sample not yet in the buffer.
      if (name === 'normalisation sample pending') expect(snap.sample).toHaveLength(10);
      else expect(snap.queued).toHaveLength(3);
      const restored = ActivationStoreCore.restore(snap, {
        hooks: ['a', 'b'],
        trainBatchSizeTokens: 32,
        nBatchesInBuffer: 4,
        seed: 3,
        consumed: () => snap.nextIndex,
        ...opts,
      });
      const rest = [...restored.queued()];
      for (const batch of input.slice(10)) rest.push(...restored.push(batch));
      rest.push(...restored.finish());
      expect(rest.map(copy)).toEqual(whole.served.slice(snap.nextIndex).map(copy));
    });
  }

  it('the stage restores and serves the queued batches first, and keeps what it holds when stopped', async () => {
    const input = batches(12, 64);
    let consumed = 0;
    const tracker = new StoreTracker(() => consumed);
    const options = { hooks: ['a', 'b'], trainBatchSizeTokens: 32, nBatchesInBuffer: 4, seed: 1 };
    let stop = false;
    // The seventh batch arrives after the stop: like a packer's flushed partial batch, it must not count.
    const interrupted = concat(
      from(input.slice(0, 6)),
      defer(() => {
        stop = true;
        return of(input[6] as ActivationBatch);
      }),
    );
    const first = await lastValueFrom(
      interrupted.pipe(activationStore({ ...options, tracker, stopped: () => stop }), toArray()),
    );
    consumed = first.length - 2;
    const snap = tracker.snapshot() as StoreSnapshot;
    expect(snap.inputBatches).toBe(6);
    expect(snap.queued).toHaveLength(2);
    // Stopped: the rows still held were not served as the end of the data.
    expect(snap.buffer.slots.length).toBeGreaterThan(0);
    const rest = await lastValueFrom(
      from(input.slice(6)).pipe(activationStore({ ...options, resume: snap }), toArray()),
    );
    const whole = await serve(options, input);
    expect(rest.map(copy)).toEqual(whole.slice(consumed).map(copy));
  });

  it('has nothing to save while its consumer is ahead of it (replaying to an old checkpoint)', () => {
    const core = new ActivationStoreCore({ ...base, consumed: () => 50 });
    for (const batch of batches(6, 64)) core.push(batch);
    expect(core.snapshot(50)).toBeNull();
  });

  it('names a store file that is not one, or damaged', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'saeflow-store-'));
    const other = path.join(dir, 'other.safetensors');
    writeSafetensorsSync(other, { x: { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
    await expect(readStoreSnapshot(other)).rejects.toThrow(
      /other\.safetensors: not a saeflow activation store/,
    );
    const { file } = runWithSnapshot({}, batches(8, 64), 5, (n) => n);
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, bytes.length - 100));
    await expect(readStoreSnapshot(file)).rejects.toThrow(UserError);
    const { snapshot } = runWithSnapshot({}, batches(8, 64), 5, (n) => n);
    const slots = Uint32Array.from(snapshot.buffer.slots);
    slots[1] = slots[0] as number;
    writeStoreSnapshotSync(file, { ...snapshot, buffer: { ...snapshot.buffer, slots } });
    await expect(readStoreSnapshot(file)).rejects.toThrow(
      /buffer_slots names row \d+, outside the buffer's \d+ rows or twice/,
    );
    const lagging = runWithSnapshot({}, batches(8, 64), 5, (n) => Math.max(0, n - 2)).snapshot;
    expect(lagging.queued).toHaveLength(2);
    expect(() => ActivationStoreCore.restore(lagging, { ...base, trainBatchSizeTokens: 16 })).toThrow(
      /batches of other sizes than 16 tokens/,
    );
  });

  it('refuses a saved store for other hooks', async () => {
    const { snapshot } = runWithSnapshot({}, batches(8, 64), 5, (n) => n);
    expect(() =>
      ActivationStoreCore.restore(snapshot, {
        hooks: ['a'],
        trainBatchSizeTokens: 32,
        nBatchesInBuffer: 4,
        seed: 3,
      }),
    ).toThrow(/holds hooks a, b, not a/);
  });
});
