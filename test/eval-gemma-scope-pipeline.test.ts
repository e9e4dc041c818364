/**
 * pipelines/eval-gemma-scope.ts end to end on the tiny random Gemma 2 (test/fixtures/families/gemma2/model),
 * with small random Gemma Scope SAEs written here: two layers x three sparsities (npz, one as safetensors),
 * plus at layer 1 a twin of one of them whose decoder rows have norm 1.5 (same features, so the same L0, and
 * a worse reconstruction). Once from a local copy of the release, once by release name from a Hugging Face
 * cache laid out as huggingface_hub writes it, offline. The canonical choice is recomputed here by hand from
 * the eval.json files.
 */
import { EventEmitter } from 'node:events';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { UserError } from '../src/pipeline/errors.js';
import { runPipeline, type RunnerIo } from '../src/pipeline/runner.js';
import { validateReportData } from '../src/report/index.js';
import { Mulberry32 } from '../src/util/random.js';
import { tempDir } from './eval-helpers.js';
import {
  GEMMA2_BOS,
  GEMMA2_MODEL,
  GEMMA2_VOCAB,
  decoderRowNorms,
  randomGemmaScopeSae,
  writeGemmaScopeSae,
} from './gemma-scope-fixtures.js';
import type { GemmaScopeWeights } from './gemma-scope-fixtures.js';
import { populateCache } from './sae-formats-helpers.js';

const SEQ = 16;
const TOKENS = 16 * SEQ;
const TWIN = 'layer_1/width_16k/average_l0_41';

interface Written {
  id: string;
  weights: GemmaScopeWeights;
  file: string;
}

let copy: string;
let dataset: string;
const written: Written[] = [];

function io(): RunnerIo {
  return {
    stdout: () => undefined,
    signals: new EventEmitter() as unknown as RunnerIo['signals'],
    isTTY: false,
    cwd: process.cwd(),
  };
}

beforeAll(async () => {
  copy = path.join(tempDir('gs-copy'), 'gemma-scope-copy');
  // Coordinates of the residual stream in a unit direction have a spread of about 2 here: thresholds
  // 0.3 / 1 / 2.5 keep most, about half and a fifth of them. The folder names are the "release" L0s.
  const sparsities = [
    { threshold: 0.3, l0: 56 },
    { threshold: 1, l0: 38 },
    { threshold: 2.5, l0: 12 },
  ];
  let seed = 10;
  for (const layer of [0, 1]) {
    for (const s of sparsities) {
      const id = `layer_${layer}/width_16k/average_l0_${s.l0}`;
      const weights = randomGemmaScopeSae({ threshold: s.threshold, seed: ++seed });
      const format = layer === 1 && s.l0 === 38 ? 'safetensors' : 'npz';
      const file = await writeGemmaScopeSae(path.join(copy, ...id.split('/')), weights, format);
      written.push({ id, weights, file });
    }
  }
  // The twin of layer 1's L0-38 SAE (same basis and threshold), decoder rows scaled to norm 1.5.
  const twin = randomGemmaScopeSae({ threshold: 1, seed: 15, decoderScale: 1.5 });
  written.push({
    id: TWIN,
    weights: twin,
    file: await writeGemmaScopeSae(path.join(copy, ...TWIN.split('/')), twin),
  });

  // Pre-tokenized held-out data inside the model's vocabulary, no special ids (0 pad, 1 eos, 2 bos).
  const rng = new Mulberry32(7);
  const lines = Array.from({ length: 24 }, () =>
    JSON.stringify({
      tokens: Array.from({ length: 40 }, () => 3 + Math.floor(rng.next() * (GEMMA2_VOCAB - 3))),
    }),
  );
  dataset = path.join(tempDir('gs-tokens'), 'tokens.jsonl');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(dataset, `${lines.join('\n')}\n`);
});

const args = (out: string, extra: string[]) =>
  parseCliArgs([
    'pipelines/eval-gemma-scope.ts',
    ...['--model', GEMMA2_MODEL, '--dataset', dataset, '--context_size', String(SEQ)],
    ...['--n_eval_tokens', String(TOKENS), '--batch_size', '4', '--backend', 'wasm', '--out', out],
    ...extra,
  ]);

interface EvalFile {
  sae: string;
  layer: number;
  hook_name: string;
  n_eval_tokens: number;
  excluded_token_ids: number[];
  metrics: Record<string, number>;
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const evalOf = (run: string, id: string): EvalFile => readJson(path.join(run, ...id.split('/'), 'eval.json'));
const releaseL0 = (id: string) => Number(/average_l0_(\d+)$/.exec(id)![1]);

/** The rule by hand: Pareto frontier of (L0, metric) within the group, then release L0 nearest the target. */
function expectedChoice(
  run: string,
  ids: string[],
  metric: (m: Record<string, number>) => number,
  target: number,
): { chosen: string; frontier: string[] } {
  const points = ids.map((id) => {
    const m = evalOf(run, id).metrics;
    return { id, l0: m.l0!, y: metric(m) };
  });
  const frontier = points.filter(
    (p) => !points.some((q) => q.l0 <= p.l0 && q.y <= p.y && (q.l0 < p.l0 || q.y < p.y)),
  );
  let chosen = frontier[0]!;
  for (const p of frontier) {
    const d = Math.abs(releaseL0(p.id) - target);
    const best = Math.abs(releaseL0(chosen.id) - target);
    if (d < best || (d === best && releaseL0(p.id) > releaseL0(chosen.id))) chosen = p;
  }
  return { chosen: chosen.id, frontier: frontier.map((p) => p.id).sort() };
}

function leftovers(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...leftovers(p));
    else if (name.endsWith('.tmp')) out.push(p);
  }
  return out;
}

describe('pipelines/eval-gemma-scope.ts', () => {
  it('evaluates every SAE of a local copy, picks the canonical one per layer by the rule, reports decoder norms', async () => {
    const out = path.join(tempDir('gs-run'), 'run');
    const outcome = await runPipeline(args(out, ['--folder', copy, '--target_l0', '45']), io());
    expect(outcome?.status).toBe('completed');

    // Every SAE evaluated on the same tokens, at its hook, with BOS (and eos/pad) left out.
    const ids = written.map((w) => w.id).sort();
    for (const id of ids) {
      const e = evalOf(out, id);
      expect(e.sae).toBe(id);
      expect(e.hook_name).toBe(`blocks.${id[6]}.hook_resid_post`);
      expect(e.n_eval_tokens).toBe(TOKENS);
      expect(e.excluded_token_ids).toContain(GEMMA2_BOS);
      for (const key of [
        'l0',
        'explained_variance',
        'ce_loss_with_sae',
        'ce_loss_without_sae',
        'kl_div_score',
      ]) {
        expect(typeof e.metrics[key], `${id} ${key}`).toBe('number');
      }
    }
    // The thresholds gave three distinct sparsities per layer, in the folders' order.
    for (const layer of [0, 1]) {
      const l0 = [56, 38, 12].map((k) => evalOf(out, `layer_${layer}/width_16k/average_l0_${k}`).metrics.l0!);
      expect(l0[0]).toBeGreaterThan(l0[1]!);
      expect(l0[1]).toBeGreaterThan(l0[2]!);
      expect(l0[2]).toBeGreaterThan(0);
    }
    // The twin fires exactly like its sibling and reconstructs worse.
    const sibling = evalOf(out, 'layer_1/width_16k/average_l0_38').metrics;
    const twin = evalOf(out, TWIN).metrics;
    expect(twin.l0).toBe(sibling.l0);
    expect(twin.explained_variance).toBeLessThan(sibling.explained_variance!);

    const report = readJson(path.join(out, 'gemma-scope.json'));
    expect(report.saes.map((s: { name: string }) => s.name).sort()).toEqual(ids);
    expect(report.target_l0).toBe(45);
    expect(report.frontier_metric).toBe('delta_loss');
    const deltaLoss = (m: Record<string, number>) => m.ce_loss_with_sae! - m.ce_loss_without_sae!;
    const groups = ['layer_0/width_16k', 'layer_1/width_16k'];
    expect(report.canonical.map((r: { group: string }) => r.group)).toEqual(groups);
    const data = validateReportData(readJson(path.join(out, 'report-data.json')), 'report-data.json');
    for (const [i, group] of groups.entries()) {
      const members = ids.filter((id) => id.startsWith(`${group}/`));
      const want = expectedChoice(out, members, deltaLoss, 45);
      const row = report.canonical[i];
      expect(row.chosen, group).toBe(want.chosen);
      expect([...row.frontier].sort(), group).toEqual(want.frontier);
      expect(row.candidates.sort()).toEqual(members);
      expect(row.l0_used).toBe('release');
      expect(row.l0).toBe(evalOf(out, want.chosen).metrics.l0);
      expect(row.delta_loss).toBeCloseTo(deltaLoss(evalOf(out, want.chosen).metrics), 12);
      // SAELens's canonical SAE of these layers (average_l0_105 / _102) is not among this copy's folders.
      expect(row.saelens_canonical).toMatch(/^layer_\d\/width_16k\/average_l0_10[25]$/);
      expect(row.agrees_with_saelens).toBeNull();
      // The usual report stars the same SAEs.
      expect(data.pareto.canonical[group]).toBe(want.chosen);
    }
    expect(report.l0_by_layer['16k']).toEqual(
      report.canonical.map((r: { layer: number; chosen: string; l0: number }) => ({
        layer: r.layer,
        sae: r.chosen,
        l0: r.l0,
        release_l0: releaseL0(r.chosen),
      })),
    );

    // Decoder norms: the written weights' row norms; only the twin is flagged.
    for (const w of written) {
      const s = report.saes.find((x: { name: string }) => x.name === w.id);
      const norms = decoderRowNorms(w.weights);
      expect(s.decoder_norm.min).toBeCloseTo(Math.min(...norms), 5);
      expect(s.decoder_norm.max).toBeCloseTo(Math.max(...norms), 5);
      expect(s.decoder_norm.mean).toBeCloseTo(norms.reduce((a, b) => a + b, 0) / norms.length, 5);
      expect(s.decoder_norm_unit).toBe(w.id !== TWIN);
    }
    expect(report.saes.find((x: { name: string }) => x.name === TWIN).decoder_norm.mean).toBeCloseTo(1.5, 5);
    expect(report.non_unit_decoders).toEqual([TWIN]);

    // The reports, complete, and no temporary file left behind.
    const md = readFileSync(path.join(out, 'gemma-scope.md'), 'utf8');
    expect(md).toContain('⚠ Decoder rows not of unit norm');
    expect(md).toContain('layer\\_1/width\\_16k/average\\_l0\\_41');
    for (const f of ['report.html', 'report.md', 'report-data.json', 'gemma-scope.json', 'gemma-scope.md']) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    expect(leftovers(out)).toEqual([]);
    const result = readJson(path.join(out, 'result.json'));
    expect(result.non_unit_decoders).toEqual([TWIN]);
    expect(result.tokens).toBe(TOKENS);
  });

  it("reads text through the model's own tokenizer; refuses layers the model lacks and a copy of another release", async () => {
    const run = (extra: string[]) => runPipeline(args(path.join(tempDir('gs-bad'), 'run'), extra), io());
    const textOut = path.join(tempDir('gs-text'), 'run');
    const text = args(textOut, ['--folder', copy, '--layers', '0']);
    text.overrides = text.overrides.map(([k, v]) => (k === 'dataset' ? [k, 'sotu'] : [k, v]));
    expect((await runPipeline(text, io()))?.status).toBe('completed');
    const e = evalOf(textOut, 'layer_0/width_16k/average_l0_56');
    expect(e.n_eval_tokens).toBe(TOKENS);
    expect(e.excluded_token_ids).toContain(GEMMA2_BOS);
    await expect(run(['--folder', copy, '--layers', '1,2'])).rejects.toThrow(
      /--layers 2: the model has layers 0\.\.1/,
    );
    await expect(run(['--folder', copy, '--widths', '65k'])).rejects.toThrow(UserError);
    const other = path.join(tempDir('gs-bad'), 'gemma-scope-2b-pt-transcoders');
    await writeGemmaScopeSae(path.join(other, 'layer_0', 'width_16k', 'average_l0_9'), written[0]!.weights);
    await expect(run(['--folder', other])).rejects.toThrow(/pass --release gemma-scope-2b-pt-transcoders/);
  });

  describe('a release by name from the Hugging Face cache, offline', () => {
    const saved = { cache: process.env.HF_HUB_CACHE, offline: process.env.HF_HUB_OFFLINE };
    beforeAll(async () => {
      const cache = tempDir('gs-hf');
      const files: Record<string, string> = {};
      for (const w of written.filter((x) => x.id.startsWith('layer_1/'))) {
        files[`${w.id}/${path.basename(w.file)}`] = w.file;
      }
      await populateCache(cache, 'google/gemma-scope-2b-pt-res', 'c'.repeat(40), files);
      process.env.HF_HUB_CACHE = cache;
      process.env.HF_HUB_OFFLINE = '1';
    });
    afterAll(() => {
      for (const [key, value] of [
        ['HF_HUB_CACHE', saved.cache],
        ['HF_HUB_OFFLINE', saved.offline],
      ] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    });

    it('evaluates the cached SAEs of the requested layer; on the FVU frontier the dominated twin is never chosen', async () => {
      const out = path.join(tempDir('gs-run'), 'run');
      const outcome = await runPipeline(
        args(out, [
          '--release',
          'gemma-scope-2b-pt-res',
          '--layers',
          '1',
          '--frontier',
          'fvu',
          '--target_l0',
          '45',
        ]),
        io(),
      );
      expect(outcome?.status).toBe('completed');
      const report = readJson(path.join(out, 'gemma-scope.json'));
      // SAELens lists other layer-1 folders too; offline, only the cached ones are evaluated.
      const ids = written
        .filter((w) => w.id.startsWith('layer_1/'))
        .map((w) => w.id)
        .sort();
      expect(report.saes.map((s: { name: string }) => s.name).sort()).toEqual(ids);
      expect(
        report.saes.every((s: { source: string }) =>
          s.source.includes('models--google--gemma-scope-2b-pt-res'),
        ),
      ).toBe(true);
      const want = expectedChoice(out, ids, (m) => 1 - m.explained_variance!, 45);
      const [row] = report.canonical;
      expect(report.canonical).toHaveLength(1);
      expect(row.chosen).toBe(want.chosen);
      // The twin's release L0 (41) is nearest 45, but its sibling beats it on FVU at the same L0.
      expect(row.frontier).not.toContain(TWIN);
      expect(row.chosen).toBe('layer_1/width_16k/average_l0_38');
      expect(report.rule).toContain('FVU');
    });
  });
});
