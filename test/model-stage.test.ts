import * as tf from '@tensorflow/tfjs-core';
import { from, lastValueFrom, toArray } from 'rxjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { activationIds, hookMatrix, hookNames } from '../src/arrow/activation-batch.js';
import { loadTfjsModel, type TfjsRunner } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { Flow } from '../src/pipeline/flow.js';
import { modelActivations, modelLoss } from '../src/stages/model/index.js';
import type { TokenBatch } from '../src/stages/text/types.js';
import { loadReference, MODEL_F32, ref, relErr, sliceBatch } from './gpt2-fixture.js';

let model: TfjsRunner;
beforeAll(async () => {
  await selectBackend('cpu');
  model = await loadTfjsModel(MODEL_F32);
});

describe('model activations stage', () => {
  it('turns token batches into activation batches that match Hugging Face, row by row', async () => {
    const r = await loadReference();
    const [n, seqLen] = r.tokens.shape;
    // Two token batches (sequences 0..1 and 2..n-1) with global window ids.
    const batches: TokenBatch[] = [
      {
        tokens: r.tokens.data.slice(0, 2 * seqLen),
        batchSize: 2,
        contextSize: seqLen,
        seqIds: Int32Array.of(0, 1),
      },
      {
        tokens: r.tokens.data.slice(2 * seqLen),
        batchSize: n - 2,
        contextSize: seqLen,
        seqIds: Int32Array.from({ length: n - 2 }, (_, i) => i + 2),
      },
    ];
    const hooks = ['blocks.0.hook_resid_pre', 'blocks.1.hook_mlp_out', 'blocks.0.attn.hook_z'];
    const out = await lastValueFrom(
      from(batches).pipe(modelActivations({ model, hooks, flow: new Flow(2) }), toArray()),
    );
    expect(out).toHaveLength(2);
    let start = 0;
    for (const [k, batch] of out.entries()) {
      const count = batches[k]!.batchSize;
      expect(batch.numRows).toBe(count * seqLen);
      expect([...hookNames(batch)].sort()).toEqual([...hooks].sort());
      const ids = activationIds(batch)!;
      expect(Array.from(ids.token)).toEqual(Array.from(batches[k]!.tokens));
      for (let row = 0; row < batch.numRows; row++) {
        expect(Number(ids.seq[row])).toBe(start + Math.floor(row / seqLen));
        expect(ids.pos[row]).toBe(row % seqLen);
      }
      for (const hook of hooks) {
        const expected = sliceBatch(ref(r, hook), start, count);
        expect(relErr(hookMatrix(batch, hook), expected.data)).toBeLessThan(1e-4);
      }
      start += count;
    }
    // hook_z [pos, n_heads, d_head] is flattened per token.
    expect(hookMatrix(out[0]!, 'blocks.0.attn.hook_z').length / out[0]!.numRows).toBe(model.config.dModel);
  });

  it('rejects an unknown hook when built, listing valid names', () => {
    expect(() => modelActivations({ model, hooks: ['blocks.7.hook_resid_pre'] })).toThrow(
      /unknown hook "blocks\.7\.hook_resid_pre"/,
    );
  });

  it('computes per-token loss and logits that match Hugging Face, and applies interventions', async () => {
    const r = await loadReference();
    const [n, seqLen] = r.tokens.shape;
    const batch: TokenBatch = {
      tokens: r.tokens.data,
      batchSize: n,
      contextSize: seqLen,
      seqIds: Int32Array.from({ length: n }, (_, i) => i),
    };
    const [out] = await lastValueFrom(
      from([batch]).pipe(modelLoss({ model, returnLogits: true }), toArray()),
    );
    expect(out!.loss.length).toBe(n * (seqLen - 1));
    expect(relErr(out!.loss, ref(r, 'loss_per_token').data)).toBeLessThan(1e-4);
    expect(relErr(out!.logits!, ref(r, 'logits').data)).toBeLessThan(1e-4);
    const [ablated] = await lastValueFrom(
      from([batch]).pipe(
        modelLoss({ model, interventions: { 'blocks.1.hook_mlp_out': (x) => tf.zerosLike(x) } }),
        toArray(),
      ),
    );
    expect(relErr(ablated!.loss, out!.loss)).toBeGreaterThan(1e-3);
  });
});
