/**
 * What an explorer page must show, computed without it: saeflow's own encode of the same tokens on the
 * TensorFlow.js engine (the model's hook activations, then the SAE's encoder), which shares none of the
 * page's code but the definitions; and the checks every explorer test makes of a page.
 */
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { loadModel, TfjsRunner } from '../src/model/index.js';
import type { ReplacementSae } from '../src/model/index.js';
import { Sae } from '../src/sae/sae.js';
import { loadTokenizer } from '../src/tokenizer/index.js';
import type { OpenedPage, PageFeature, PageRow } from './explorer-page.js';

/**
 * saeflow's own features for the text on the TensorFlow.js engine: the model's activation at the SAE's
 * hook, then the SAE's encoder (src/sae/sae.ts); the tokens from the Node tokenizer with BOS first.
 */
export async function referenceFeatures(
  modelDir: string,
  sae: ReplacementSae,
  hook: string,
  text: string,
): Promise<{ ids: number[]; features: Float32Array }> {
  const tokenizer = await loadTokenizer(modelDir);
  const bos = tokenizer.bosId ?? tokenizer.eosId;
  const ids = [...(tokenizer.prependBos && bos !== null ? [bos] : []), ...tokenizer.encode(text)];
  const runner = TfjsRunner.create(await loadModel(modelDir));
  try {
    const run = await runner.runWithHooks(
      { data: Int32Array.from(ids), shape: [1, ids.length] },
      { hooks: [hook] },
    );
    const act = run.activations.get(hook)!;
    const encoder = Sae.fromTensors(sae.config, sae.kind, { ...sae.tensors });
    const x = tf.tensor2d(act.data, [ids.length, sae.config.d_in]);
    const f = encoder.encode(x);
    const features = (await f.data()) as Float32Array;
    tf.dispose([x, f]);
    encoder.dispose();
    return { ids, features };
  } finally {
    await runner.dispose();
  }
}

/** The k largest positive activations per token, largest first: what the page should list. */
export function expectedTop(features: Float32Array, width: number, k: number): PageFeature[][] {
  const rows: PageFeature[][] = [];
  for (let r = 0; r < features.length / width; r++) {
    const row = Array.from(features.subarray(r * width, (r + 1) * width), (activation, feature) => ({
      feature,
      activation,
    }));
    rows.push(
      row
        .filter((f) => f.activation > 0)
        .sort((a, b) => b.activation - a.activation)
        .slice(0, k),
    );
  }
  return rows;
}

export function expectSameFeatures(rows: PageRow[], ids: number[], expected: PageFeature[][]): void {
  expect(rows.map((r) => r.tokenId)).toEqual(ids);
  rows.forEach((row, pos) => {
    const want = expected[pos]!;
    expect(
      row.features.map((f) => f.feature),
      `token ${pos}`,
    ).toEqual(want.map((f) => f.feature));
    row.features.forEach((f, i) => {
      const ref = want[i]!.activation;
      expect(
        Math.abs(f.activation - ref),
        `token ${pos} feature ${f.feature}: ${f.activation} vs ${ref}`,
      ).toBeLessThanOrEqual(1e-3 * Math.abs(ref));
    });
  });
}

export function expectOnlyOwnRequests(opened: OpenedPage): void {
  expect(opened.problems).toEqual([]);
  expect(opened.urls.length).toBeGreaterThan(0);
  for (const u of opened.urls) expect(u.startsWith(opened.server.url), u).toBe(true);
  expect(opened.server.requests.filter((r) => r.status !== 200)).toEqual([]);
}

/** The WebAssembly threads a cross-origin-isolated page runs by default: half the cores, up to 4. */
export async function expectedThreads(page: OpenedPage['page']): Promise<number> {
  const cores = await page.evaluate(
    () =>
      (globalThis as unknown as { navigator: { hardwareConcurrency: number } }).navigator.hardwareConcurrency,
  );
  return Math.max(1, Math.min(4, Math.ceil(cores / 2)));
}
