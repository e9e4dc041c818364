/**
 * GPT-2 weights from a Hugging Face directory (`model.safetensors`, or shards listed in
 * `model.safetensors.index.json`), as float32 arrays in HF's own layout: Conv1D weights are [in, out], which
 * is what `x @ W` wants, so no engine needs a transposed matmul for them.
 */
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../pipeline/errors.js';
import { readSafetensors, readSafetensorsHeader, tensorToFloat32 } from '../io/safetensors.js';
import type { SafetensorsHeader } from '../io/safetensors.js';
import type { Gpt2Config } from './gpt2-config.js';

export interface LayerNormWeights {
  weight: Float32Array;
  bias: Float32Array;
}

/** A Conv1D: `weight` is [in, out] row-major, `bias` is [out]. */
export interface LinearWeights {
  weight: Float32Array;
  bias: Float32Array;
}

export interface Gpt2BlockWeights {
  ln1: LayerNormWeights;
  /** c_attn: [d_model, 3 d_model], output columns q | k | v, heads contiguous inside each. */
  attnQkv: LinearWeights;
  /** attn.c_proj (TransformerLens W_O / b_O): [d_model, d_model]. */
  attnOut: LinearWeights;
  ln2: LayerNormWeights;
  /** mlp.c_fc (W_in / b_in): [d_model, d_mlp]. */
  mlpIn: LinearWeights;
  /** mlp.c_proj (W_out / b_out): [d_mlp, d_model]. */
  mlpOut: LinearWeights;
}

export interface Gpt2Weights {
  /** wte (W_E): [vocab, d_model]. */
  wte: Float32Array;
  /**
   * The unembedding, [vocab, d_model] (W_U transposed). Tied to wte in the file, so loading gives the same
   * array; kept separate because weight processing changes W_E but not W_U, as in TransformerLens.
   */
  unembed: Float32Array;
  /** wpe (W_pos): [n_positions, d_model]. */
  wpe: Float32Array;
  blocks: Gpt2BlockWeights[];
  lnFinal: LayerNormWeights;
}

/** Every tensor a GPT-2 needs, by its key without the `transformer.` prefix, with the expected shape. */
export function expectedGpt2Tensors(config: Gpt2Config): Map<string, number[]> {
  const d = config.nEmbd;
  const m = new Map<string, number[]>([
    ['wte.weight', [config.vocabSize, d]],
    ['wpe.weight', [config.nPositions, d]],
  ]);
  for (let l = 0; l < config.nLayer; l++) {
    const p = `h.${l}.`;
    m.set(`${p}ln_1.weight`, [d]);
    m.set(`${p}ln_1.bias`, [d]);
    m.set(`${p}attn.c_attn.weight`, [d, 3 * d]);
    m.set(`${p}attn.c_attn.bias`, [3 * d]);
    m.set(`${p}attn.c_proj.weight`, [d, d]);
    m.set(`${p}attn.c_proj.bias`, [d]);
    m.set(`${p}ln_2.weight`, [d]);
    m.set(`${p}ln_2.bias`, [d]);
    m.set(`${p}mlp.c_fc.weight`, [d, config.dMlp]);
    m.set(`${p}mlp.c_fc.bias`, [config.dMlp]);
    m.set(`${p}mlp.c_proj.weight`, [config.dMlp, d]);
    m.set(`${p}mlp.c_proj.bias`, [d]);
  }
  m.set('ln_f.weight', [d]);
  m.set('ln_f.bias', [d]);
  return m;
}

const PREFIX = 'transformer.';
const LM_HEAD = 'lm_head.weight';

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** Which file holds each tensor key: one `model.safetensors`, or the shards of an index. */
async function locateTensorFiles(dir: string): Promise<{ files: Set<string>; source: string }> {
  const single = path.join(dir, 'model.safetensors');
  if (await exists(single)) return { files: new Set([single]), source: single };
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (!(await exists(indexFile))) {
    throw new UserError(
      `no model.safetensors (or model.safetensors.index.json) in ${dir}; ` +
        'PyTorch pickles (pytorch_model.bin) are never loaded',
    );
  }
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(await readFile(indexFile, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new UserError(`${indexFile}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof weightMap !== 'object' || weightMap === null) {
    throw new UserError(`${indexFile}: missing the "weight_map" object`);
  }
  const files = new Set<string>();
  for (const [key, file] of Object.entries(weightMap)) {
    if (typeof file !== 'string' || file.includes('/') || file.includes('\\') || file.startsWith('.')) {
      throw new UserError(`${indexFile}: weight_map["${key}"] must be a file name in the same directory`);
    }
    files.add(path.join(dir, file));
  }
  return { files, source: indexFile };
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Loads and validates GPT-2 weights from `dir`. Keys may carry the `transformer.` prefix or not; the
 * `attn.bias`/`attn.masked_bias` mask buffers and unknown extras are ignored; an `lm_head.weight`, if
 * present, must equal `wte.weight` (the unembedding is tied). F16/BF16/F64 are widened to float32.
 */
export async function loadGpt2Weights(dir: string, config: Gpt2Config): Promise<Gpt2Weights> {
  const { files, source } = await locateTensorFiles(dir);
  const headers = new Map<string, SafetensorsHeader>();
  for (const file of files) headers.set(file, await readSafetensorsHeader(file));

  const where = new Map<string, string>();
  for (const [file, header] of headers) for (const key of Object.keys(header.tensors)) where.set(key, file);
  const prefixed = where.has(`${PREFIX}wte.weight`);
  const prefix = prefixed ? PREFIX : '';

  // Validate every name and shape from the headers before reading any tensor data.
  const expected = expectedGpt2Tensors(config);
  const toRead = new Map<string, string[]>();
  const plan = (key: string): void => {
    const file = where.get(key)!;
    if (!toRead.has(file)) toRead.set(file, []);
    toRead.get(file)!.push(key);
  };
  for (const [name, shape] of expected) {
    const key = prefix + name;
    const file = where.get(key);
    if (file === undefined) {
      throw new UserError(`${source}: missing tensor '${key}' (expected shape [${shape.join(', ')}])`);
    }
    const info = headers.get(file)!.tensors[key]!;
    if (!sameShape(info.shape, shape)) {
      throw new UserError(
        `${file}: tensor '${key}' has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] from config.json`,
      );
    }
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new UserError(
        `${file}: tensor '${key}' has dtype ${info.dtype}; weights must be F32, F16, BF16 or F64`,
      );
    }
    plan(key);
  }
  const lmHeadKey = where.has(LM_HEAD) ? LM_HEAD : where.has(PREFIX + LM_HEAD) ? PREFIX + LM_HEAD : undefined;
  if (lmHeadKey !== undefined) {
    const actual = headers.get(where.get(lmHeadKey)!)!.tensors[lmHeadKey]!.shape;
    const want = expected.get('wte.weight')!;
    if (!sameShape(actual, want)) {
      throw new UserError(
        `${where.get(lmHeadKey)}: tensor '${lmHeadKey}' has shape [${actual.join(', ')}], expected [${want.join(', ')}]`,
      );
    }
    plan(lmHeadKey);
  }

  const values = new Map<string, Float32Array>();
  for (const [file, keys] of toRead) {
    const { tensors } = await readSafetensors(file, { names: keys });
    for (const [key, t] of tensors) {
      try {
        values.set(key, tensorToFloat32(t, key));
      } catch (e) {
        throw new UserError(`${file}: tensor '${key}': ${(e as Error).message}`, { cause: e });
      }
    }
  }
  const get = (name: string): Float32Array => values.get(prefix + name)!;

  if (lmHeadKey !== undefined) {
    const lmHead = values.get(lmHeadKey)!;
    const wte = get('wte.weight');
    for (let i = 0; i < wte.length; i++) {
      if (lmHead[i] !== wte[i] && !(Number.isNaN(lmHead[i]) && Number.isNaN(wte[i]))) {
        throw new UserError(
          `${where.get(lmHeadKey)}: '${lmHeadKey}' differs from '${prefix}wte.weight' (first at element ${i}); ` +
            'only GPT-2 with the unembedding tied to the token embedding is supported',
        );
      }
    }
  }

  const ln = (p: string): LayerNormWeights => ({ weight: get(`${p}.weight`), bias: get(`${p}.bias`) });
  const lin = (p: string): LinearWeights => ({ weight: get(`${p}.weight`), bias: get(`${p}.bias`) });
  const blocks: Gpt2BlockWeights[] = [];
  for (let l = 0; l < config.nLayer; l++) {
    const p = `h.${l}.`;
    blocks.push({
      ln1: ln(`${p}ln_1`),
      attnQkv: lin(`${p}attn.c_attn`),
      attnOut: lin(`${p}attn.c_proj`),
      ln2: ln(`${p}ln_2`),
      mlpIn: lin(`${p}mlp.c_fc`),
      mlpOut: lin(`${p}mlp.c_proj`),
    });
  }
  const wte = get('wte.weight');
  return { wte, unembed: wte, wpe: get('wpe.weight'), blocks, lnFinal: ln('ln_f') };
}
