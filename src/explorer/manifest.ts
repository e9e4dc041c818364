/**
 * explorer.json: what the exported page needs to know besides its files, written by the export and read by
 * the page (no Node imports here: the page's bundle includes this module).
 */

export const MANIFEST_FILE = 'explorer.json';
export const MODEL_FILE = 'model.onnx';
export const FEATURES_FILE = 'features.json';
export const PAGE_FILE = 'explorer.html';
export const SCRIPT_FILE = 'explorer.js';
/** onnxruntime-web's WebAssembly build (SIMD, threads when the page is cross-origin isolated). */
export const ORT_WASM_FILE = 'ort-wasm-simd-threaded.wasm';
/** The build behind onnxruntime-web's WebGPU bundle, which also runs the WebAssembly provider. */
export const ORT_WEBGPU_WASM_FILE = 'ort-wasm-simd-threaded.asyncify.wasm';

export type ExplorerTokenizer =
  /** GPT-2's BPE through gpt-tokenizer, bundled into the script (as src/tokenizer/gpt2.ts in Node). */
  | { kind: 'gpt2' }
  /** A tokenizer.json through @huggingface/tokenizers, bundled; the files lie beside the page. */
  | {
      kind: 'tokenizer.json';
      files: { tokenizer: string; config: string };
    };

export interface ExplorerManifest {
  format: 'saeflow-explorer';
  version: 1;
  model: { name: string; family: string; d_model: number; n_layers: number; processing: string };
  sae: {
    name: string;
    architecture: string;
    hook_name: string;
    hook_name_out: string | null;
    d_sae: number;
    /** The SAE's folder when exported (for the reader; the page never reads it). */
    path: string;
  };
  graph: {
    file: string;
    input: string;
    features: string;
    /** float16: weights stored as float16 and widened in the graph; computation is float32 either way. */
    weights: 'float32' | 'float16';
    /** max |float16 graph - float32 graph| / max |float32 graph| over the probe text's feature activations. */
    float16_max_relative_difference: number | null;
    bytes: number;
  };
  tokenizer: ExplorerTokenizer;
  runtime: {
    /** onnxruntime-web's WebAssembly, as a URL relative to the page (beside it, or `../` when shared). */
    wasm: string;
    /** Whether the page tries WebGPU first (and falls back to WebAssembly where the browser has none). */
    webgpu: boolean;
  };
  /** Prepended to every text, as the SAE's training windows began (null: none). */
  bos_id: number | null;
  /** Ids SAELens leaves out of training and metrics (shown, but marked). */
  special_ids: number[];
  /** Texts are cut to the SAE's training context size. */
  context_size: number;
  /** Features shown per token. */
  top_k: number;
  /** The dashboards file, when an evaluation of the SAE wrote some. */
  dashboards: { file: string; source: string; features: number } | null;
}
