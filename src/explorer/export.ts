/**
 * Writes an explorer for one SAE: the model up to the SAE's hook plus the SAE's encoder as model.onnx
 * (graph.ts), the tokenizer's data, the dashboards an evaluation collected, onnxruntime-web's WebAssembly
 * and the page with its bundled script (page-files.ts). Everything the page loads lies in the folder, or,
 * for several explorers side by side (sweep.ts), the script and the WebAssembly in their shared folder.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { encodeOnnxModel, PROTOBUF_LIMIT } from '../engine/onnx/onnx-proto.js';
import type { OnnxModel } from '../engine/onnx/onnx-proto.js';
import { describeEvalModel, modelSpecForSaes } from '../eval/eval-model.js';
import { resolveWindowing } from '../eval/eval-settings.js';
import { evalProcessing } from '../eval/model-processing.js';
import { findSaeFolders, loadEvalTarget } from '../eval/sae-targets.js';
import { Checkpoint } from '../model/checkpoint.js';
import type { WeightProcessing } from '../model/process-weights.js';
import { loadModel } from '../model/registry.js';
import { UserError } from '../pipeline/errors.js';
import { loadTokenizer, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE } from '../tokenizer/load-tokenizer.js';
import { findDashboards } from './dashboards.js';
import type { FoundDashboards } from './dashboards.js';
import { buildExplorerGraph, withFloat16Weights } from './graph.js';
import { FEATURES_FILE, MANIFEST_FILE, MODEL_FILE } from './manifest.js';
import type { ExplorerManifest, ExplorerTokenizer } from './manifest.js';
import { runtimeUrls, writePageHtml, writeRuntimeFiles } from './page-files.js';
import type { RuntimeLocation } from './page-files.js';
import { runFeatures } from './run-graph.js';

/** The float16 weights are used only if the activations stay this close to float32's (issue 18). */
export const FLOAT16_TOLERANCE = 1e-2;

/** A text the float16 weights are measured on: ordinary prose, long enough to exercise every position kind. */
const PROBE_TEXT =
  'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, ' +
  'and nothing particular to interest me on shore, I thought I would sail about a little and see the watery ' +
  'part of the world. The Congress shall have power to lay and collect taxes, duties, imposts and excises.';

export interface ExplorerOptions {
  /** One SAE folder (or a run or saes/ folder holding exactly one). */
  sae: string;
  out: string;
  /** `auto`: the model the SAE's training run recorded, else as eval-sae's --model auto. */
  model: string;
  weights: 'auto' | 'float32' | 'float16';
  topK: number;
  /** Ship onnxruntime-web's WebGPU build: the page tries WebGPU first, WebAssembly where there is none. */
  webgpu?: boolean;
  /** Models whose float32 checkpoint is larger are refused (the page holds the graph in wasm memory). */
  maxModelBytes: number;
  /** The model's weight processing; default what the SAE's cfg.json records (as eval-sae's auto). */
  processing?: WeightProcessing | null;
  /**
   * Where the page's script and WebAssembly are, relative to `out`: `.` (default) writes them into `out`;
   * anything else names a folder the caller has written them into with writeRuntimeFiles.
   */
  runtime?: RuntimeLocation;
  /** The dashboards to show; default those of the SAE's newest evaluation (findDashboards). */
  dashboards?: FoundDashboards | null;
  log: (msg: string) => void;
}

export interface ExplorerResult {
  dir: string;
  manifest: ExplorerManifest;
  /** Bytes of every file the page loads. */
  pageBytes: number;
  /** Sizes of the files the page loads, by their URL relative to the page (`../explorer.js` when shared). */
  files: Record<string, number>;
}

function maxRelativeDifference(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Tokens whose set of firing features differs between two [tokens, width] activation matrices. */
function tokensFiringDifferently(a: Float32Array, b: Float32Array, width: number): number {
  let n = 0;
  for (let t = 0; t < a.length / width; t++) {
    for (let j = t * width; j < (t + 1) * width; j++) {
      if (a[j]! > 0 !== b[j]! > 0) {
        n++;
        break;
      }
    }
  }
  return n;
}

export async function writeExplorer(opts: ExplorerOptions): Promise<ExplorerResult> {
  const locations = findSaeFolders([opts.sae]);
  if (locations.length !== 1) {
    throw new UserError(
      `--sae ${opts.sae}: holds ${locations.length} SAEs (${locations.map((l) => l.name).join(', ')}); an explorer shows one, name its folder`,
    );
  }
  const location = locations[0]!;
  const described = await describeEvalModel(modelSpecForSaes(opts.model, [location]));
  const { source, config } = described;
  opts.log(`model: ${source.description}`);
  const checkpointBytes = (await Checkpoint.open(source.dir)).float32Bytes;
  if (checkpointBytes > opts.maxModelBytes) {
    throw new UserError(
      `model ${source.name} has ${(checkpointBytes / 2 ** 20).toFixed(0)} MiB of float32 weights, over --max_model_mb ` +
        `${(opts.maxModelBytes / 2 ** 20).toFixed(0)}: a browser tab holds the whole graph in WebAssembly memory (4 GiB at most)`,
    );
  }
  const target = await loadEvalTarget(location, { config, name: source.name });
  const tokenizer = await loadTokenizer(source.dir);
  const { processing } = evalProcessing(opts.processing ?? null, [target]);
  const windowing = resolveWindowing(
    { contextSize: null, prependBos: null },
    [target],
    config,
    tokenizer.prependBos,
  );
  const bos = tokenizer.bosId ?? tokenizer.eosId;
  const bosId = windowing.prependBos ? bos : null;
  try {
    const model = await loadModel(source.dir, { processing, config, weightStorage: 'memory' });
    const graph = buildExplorerGraph(
      model,
      { name: target.name, config: target.config, kind: target.kind, tensors: target.tensors },
      target.hookOut.name,
      target.hookIn.name,
    );

    const probe = [...(bosId === null ? [] : [bosId]), ...tokenizer.encode(PROBE_TEXT)].slice(
      0,
      windowing.contextSize,
    );
    let chosen: OnnxModel = graph.model;
    let difference: number | null = null;
    if (opts.weights !== 'float32') {
      const half = withFloat16Weights(graph.model);
      const [full, halved] = [
        await runFeatures(graph.model, graph, probe),
        await runFeatures(half, graph, probe),
      ];
      difference = maxRelativeDifference(full, halved);
      const fits = difference <= FLOAT16_TOLERANCE;
      const changed = tokensFiringDifferently(full, halved, target.config.d_sae);
      opts.log(
        `float16 weights: feature activations within ${difference.toExponential(2)} of float32 (relative to the largest); ` +
          `${changed} of ${probe.length} probe tokens fire a different set of features` +
          (fits || opts.weights === 'float16' ? '' : `, over ${FLOAT16_TOLERANCE}: keeping float32`),
      );
      if (fits || opts.weights === 'float16') chosen = half;
    }
    const bytes = encodeOnnxModel(chosen);
    if (bytes.length >= PROTOBUF_LIMIT) {
      throw new UserError(
        `the explorer's graph is ${(bytes.length / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB`,
      );
    }

    await mkdir(opts.out, { recursive: true });
    const files: Record<string, number> = {};
    const put = async (name: string, data: Uint8Array | string) => {
      await writeFile(path.join(opts.out, name), data);
      files[name] = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    };
    await put(MODEL_FILE, bytes);

    let tokenizerSpec: ExplorerTokenizer = { kind: 'gpt2' };
    if (tokenizer.identity !== 'gpt2') {
      tokenizerSpec = {
        kind: 'tokenizer.json',
        files: { tokenizer: TOKENIZER_FILE, config: TOKENIZER_CONFIG_FILE },
      };
      for (const name of [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]) {
        // tokenizer_config.json is optional for the library; an empty object stands in for a missing one.
        const data = await readFile(path.join(source.dir, name)).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT' || name === TOKENIZER_FILE) throw e;
          return '{}';
        });
        await put(name, data);
      }
    }

    const found = opts.dashboards !== undefined ? opts.dashboards : await findDashboards(location.path);
    if (found) {
      await put(FEATURES_FILE, JSON.stringify(found.dashboards));
      opts.log(`dashboards: ${found.dashboards.length} features from ${found.source}`);
    } else {
      opts.log('dashboards: none (no evaluation of this SAE with dashboards was found; run eval-sae on it)');
    }

    const webgpu = opts.webgpu === true;
    const runtime = opts.runtime ?? '.';
    const urls = runtimeUrls(webgpu, runtime);
    const manifest: ExplorerManifest = {
      format: 'saeflow-explorer',
      version: 1,
      model: {
        name: source.name,
        family: config.family,
        d_model: config.dModel,
        n_layers: config.nLayers,
        processing,
      },
      sae: {
        name: target.name,
        architecture: target.config.architecture,
        hook_name: target.hookIn.name,
        hook_name_out: target.transcoder ? target.hookOut.name : null,
        d_sae: target.config.d_sae,
        path: location.path,
      },
      graph: {
        file: MODEL_FILE,
        input: graph.input,
        features: graph.features,
        weights: chosen === graph.model ? 'float32' : 'float16',
        float16_max_relative_difference: difference,
        bytes: bytes.length,
      },
      tokenizer: tokenizerSpec,
      runtime: { wasm: urls.wasm, webgpu },
      bos_id: bosId,
      special_ids: [...tokenizer.specialIds],
      context_size: windowing.contextSize,
      top_k: opts.topK,
      dashboards: found
        ? { file: FEATURES_FILE, source: found.source, features: found.dashboards.length }
        : null,
    };
    await put(MANIFEST_FILE, JSON.stringify(manifest, null, 2));
    Object.assign(files, await writePageHtml(opts.out, manifest, runtime));
    if (runtime === '.') {
      Object.assign(files, await writeRuntimeFiles(opts.out, webgpu));
    } else {
      for (const url of [urls.script, urls.wasm]) {
        const size = await stat(path.join(opts.out, url)).then(
          (s) => s.size,
          () => {
            throw new Error(`the shared ${url} is missing beside ${opts.out}: writeRuntimeFiles comes first`);
          },
        );
        files[url] = size;
      }
    }
    const pageBytes = Object.values(files).reduce((a, b) => a + b, 0);
    return { dir: opts.out, manifest, pageBytes, files };
  } finally {
    target.sae.dispose();
  }
}
