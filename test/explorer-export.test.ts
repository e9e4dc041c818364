/**
 * The explorer's export without a browser: the graph it writes computes what saeflow's engines compute (run
 * here on onnxruntime-node against the TensorFlow.js engine's hook activation and SAE encoder), holds no
 * weight the features do not need, float16 storage halves the weights and keeps the computation float32,
 * and the pipeline refuses what a page cannot hold. test/explorer-browser.test.ts runs the page itself.
 */
import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keepOutputs } from '../src/engine/onnx/model-graph.js';
import { TensorElemType } from '../src/engine/onnx/onnx-proto.js';
import { writeExplorer } from '../src/explorer/export.js';
import { buildExplorerGraph, withFloat16Weights } from '../src/explorer/graph.js';
import type { ExplorerManifest } from '../src/explorer/manifest.js';
import { runFeatures } from '../src/explorer/run-graph.js';
import { explorerFolderName } from '../src/explorer/sweep.js';
import { loadModel, TfjsRunner } from '../src/model/index.js';
import type { Model, ReplacementSae } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { UserError } from '../src/pipeline/errors.js';
import { runPipeline } from '../src/pipeline/runner.js';
import type { RunnerIo } from '../src/pipeline/runner.js';
import { Sae } from '../src/sae/sae.js';
import { writeSaeFolder } from '../src/sae/saelens-folder.js';
import { randomSae } from './replacement-helpers.js';

const TINY_GPT2 = path.resolve('models/tiny-gpt2');
const HOOK = 'blocks.1.hook_resid_post';
const IDS = [50256, 464, 1342, 286, 262, 4171, 373, 3223, 13, 198, 40, 716];

let dir: string;
let model: Model;
beforeAll(async () => {
  await selectBackend('wasm');
  dir = await mkdtemp(path.join(tmpdir(), 'saeflow-explorer-export-'));
  model = await loadModel(TINY_GPT2);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function writeSae(folder: string, sae: ReplacementSae): Promise<string> {
  const at = path.join(dir, folder);
  await writeSaeFolder(at, sae.config, {
    architecture: sae.config.architecture,
    tensors: { ...sae.tensors },
  });
  return at;
}

/** The TensorFlow.js engine's features: the hook's activation, then the SAE's encoder. */
async function tfjsFeatures(sae: ReplacementSae, hookIn: string): Promise<Float32Array> {
  const runner = TfjsRunner.create(model);
  const run = await runner.runWithHooks(
    { data: Int32Array.from(IDS), shape: [1, IDS.length] },
    { hooks: [hookIn] },
  );
  const encoder = Sae.fromTensors(sae.config, sae.kind, { ...sae.tensors });
  const x = tf.tensor2d(run.activations.get(hookIn)!.data, [IDS.length, sae.config.d_in]);
  const f = encoder.encode(x);
  const out = (await f.data()) as Float32Array;
  tf.dispose([x, f]);
  encoder.dispose();
  await runner.dispose();
  return out;
}

function maxRelative(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

describe('the explorer graph', () => {
  const cases: Array<{ name: string; sae: ReplacementSae; hookIn: string }> = [
    { name: 'jumprelu', sae: randomSae({ architecture: 'jumprelu', hook: HOOK, seed: 5 }), hookIn: HOOK },
    {
      name: 'topk with rescaled activations and layer_norm',
      sae: randomSae({
        architecture: 'topk',
        hook: HOOK,
        k: 5,
        rescaleActsByDecoderNorm: true,
        normalize: 'layer_norm',
        seed: 6,
      }),
      hookIn: HOOK,
    },
    {
      name: 'skip transcoder',
      sae: randomSae({
        architecture: 'skip_transcoder',
        hook: 'blocks.1.ln2.hook_normalized',
        hookOut: 'blocks.1.hook_mlp_out',
        seed: 7,
      }),
      hookIn: 'blocks.1.ln2.hook_normalized',
    },
  ];
  for (const c of cases) {
    it(`computes saeflow's features for ${c.name}, and ships only what they need`, async () => {
      const hookOut = (c.sae.config.metadata.hook_name_out as string | undefined) ?? HOOK;
      const graph = buildExplorerGraph(model, c.sae, hookOut, c.hookIn);
      expect(graph.model.graph.outputs.map((o) => o.name)).toEqual([graph.features]);
      const names = graph.model.graph.initializers.map((t) => t.name);
      // The decoder is needed only to rescale TopK activations by its row norms.
      expect(names.some((n) => n.endsWith('.W_dec'))).toBe(
        c.sae.config.rescale_acts_by_decoder_norm === true,
      );
      // Nothing past the hook: no layer 2 or 3 weights, no final norm.
      expect(names.filter((n) => /^blocks\.[23]\.|^ln_final/.test(n))).toEqual([]);
      const features = await runFeatures(graph.model, graph, IDS);
      expect(features.length).toBe(IDS.length * c.sae.config.d_sae);
      expect(maxRelative(features, await tfjsFeatures(c.sae, c.hookIn))).toBeLessThan(1e-5);
    });
  }

  it('stores large weights as float16 and widens them, computing in float32', async () => {
    const sae = cases[0]!.sae;
    const graph = buildExplorerGraph(model, sae, HOOK);
    const half = withFloat16Weights(graph.model);
    const f16 = half.graph.initializers.filter((t) => t.elemType === TensorElemType.FLOAT16);
    expect(f16.map((t) => t.name)).toContain('sae0.W_enc.f16');
    // Small tensors (biases, norms, the threshold) stay float32.
    expect(half.graph.initializers.find((t) => t.name === 'sae0.threshold')?.elemType).toBe(
      TensorElemType.FLOAT,
    );
    const casts = (m: typeof half) => m.graph.nodes.filter((n) => n.opType === 'Cast').length;
    expect(casts(half) - casts(graph.model)).toBe(f16.length);
    const full = await runFeatures(graph.model, graph, IDS);
    const halved = await runFeatures(half, graph, IDS);
    const d = maxRelative(halved, full);
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(1e-2);
  });

  it('keepOutputs refuses an output the graph does not have', () => {
    const graph = buildExplorerGraph(model, cases[0]!.sae, HOOK);
    expect(() => keepOutputs(graph.model, ['nope'])).toThrow(/no output nope/);
  });
});

describe('writeExplorer and pipelines/explore-sae.ts', () => {
  const options = {
    model: TINY_GPT2,
    weights: 'auto' as const,
    topK: 4,
    maxModelBytes: 2 ** 31,
    log: () => undefined,
  };

  it('refuses a folder holding several SAEs, and a model over the size limit, by name', async () => {
    await writeSae('several/saes/a', randomSae({ architecture: 'standard', hook: HOOK, seed: 1 }));
    await writeSae('several/saes/b', randomSae({ architecture: 'standard', hook: HOOK, seed: 2 }));
    const several = writeExplorer({ ...options, sae: path.join(dir, 'several'), out: path.join(dir, 'x') });
    await expect(several).rejects.toThrow(UserError);
    await expect(several).rejects.toThrow(/holds 2 SAEs \(a, b\)/);
    const big = writeExplorer({
      ...options,
      sae: path.join(dir, 'several/saes/a'),
      out: path.join(dir, 'y'),
      maxModelBytes: 2 ** 20,
    });
    await expect(big).rejects.toThrow(/over --max_model_mb 1: a browser tab/);
  });

  it('runs as a pipeline and writes every file the page loads, with the float16 choice measured', async () => {
    const sae = await writeSae('one', randomSae({ architecture: 'standard', hook: HOOK, seed: 3 }));
    const out = path.join(dir, 'run');
    const io: RunnerIo = {
      stdout: () => undefined,
      signals: new EventEmitter() as unknown as RunnerIo['signals'],
      isTTY: false,
      cwd: process.cwd(),
    };
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/explore-sae.ts',
        '--sae',
        sae,
        '--model',
        TINY_GPT2,
        '--backend',
        'cpu',
        '--out',
        out,
      ]),
      io,
    );
    expect(outcome?.status).toBe('completed');
    const manifest = JSON.parse(await readFile(path.join(out, 'explorer.json'), 'utf8')) as ExplorerManifest;
    const files = (outcome!.result as { files: Record<string, number> }).files;
    expect(Object.keys(files).sort()).toEqual(
      ['explorer.html', 'explorer.js', 'explorer.json', 'model.onnx', 'ort-wasm-simd-threaded.wasm'].sort(),
    );
    expect(manifest.bos_id).toBe(50256);
    expect(manifest.dashboards).toBeNull();
    expect(manifest.tokenizer).toEqual({ kind: 'gpt2' });
    const d = manifest.graph.float16_max_relative_difference!;
    expect(manifest.graph.weights).toBe(d <= 1e-2 ? 'float16' : 'float32');
    const html = await readFile(path.join(out, 'explorer.html'), 'utf8');
    expect(html).toContain('<script type="module" src="explorer.js"></script>');
    expect(html).not.toMatch(/https?:\/\//);
  });
});

describe('explorer folders of a sweep', () => {
  it('keep plain SAE names and make the others plain, never hidden', () => {
    expect(explorerFolderName('topk-k16')).toBe('topk-k16');
    expect(explorerFolderName('L6 topk/16k')).toBe('L6_topk_16k');
    expect(explorerFolderName('.hidden')).toBe('_hidden');
    expect(explorerFolderName('..')).toBe('_.');
    expect(explorerFolderName('')).toBe('_');
  });
});
