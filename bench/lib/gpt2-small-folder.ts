/**
 * A Hugging Face folder of GPT-2 small's shape with random weights (float32 safetensors, 498 MB, config.json
 * as transformers writes it; no tokenizer files, so saeflow tokenizes with GPT-2's own BPE): what the
 * benches run where the real GPT-2 small cannot be downloaded. Random weights make sizes and speeds real.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { Mulberry32 } from '../../src/util/random.js';

const D = 768;
const LAYERS = 12;
const VOCAB = 50257;

/** Writes the folder unless it already holds one (config.json and model.safetensors); returns it. */
export async function writeGpt2SmallFolder(modelDir: string): Promise<string> {
  if (existsSync(path.join(modelDir, 'config.json')) && existsSync(path.join(modelDir, 'model.safetensors')))
    return modelDir;
  const rng = new Mulberry32(1);
  const t = (shape: number[], scale: number, fill?: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (fill === undefined) for (let i = 0; i < n; i++) data[i] = (rng.next() * 2 - 1) * scale;
    else data.fill(fill);
    return { dtype: 'F32' as const, shape, data };
  };
  const tensors: Record<string, ReturnType<typeof t>> = {
    'transformer.wte.weight': t([VOCAB, D], 0.05),
    'transformer.wpe.weight': t([1024, D], 0.01),
    'transformer.ln_f.weight': t([D], 0, 1),
    'transformer.ln_f.bias': t([D], 0, 0),
  };
  for (let l = 0; l < LAYERS; l++) {
    const p = `transformer.h.${l}.`;
    Object.assign(tensors, {
      [`${p}ln_1.weight`]: t([D], 0, 1),
      [`${p}ln_1.bias`]: t([D], 0, 0),
      [`${p}attn.c_attn.weight`]: t([D, 3 * D], 0.03),
      [`${p}attn.c_attn.bias`]: t([3 * D], 0.01),
      [`${p}attn.c_proj.weight`]: t([D, D], 0.03),
      [`${p}attn.c_proj.bias`]: t([D], 0.01),
      [`${p}ln_2.weight`]: t([D], 0, 1),
      [`${p}ln_2.bias`]: t([D], 0, 0),
      [`${p}mlp.c_fc.weight`]: t([D, 4 * D], 0.03),
      [`${p}mlp.c_fc.bias`]: t([4 * D], 0.01),
      [`${p}mlp.c_proj.weight`]: t([4 * D, D], 0.03),
      [`${p}mlp.c_proj.bias`]: t([D], 0.01),
    });
  }
  await mkdir(modelDir, { recursive: true });
  await writeSafetensors(path.join(modelDir, 'model.safetensors'), tensors);
  // config.json last: its presence marks a complete folder.
  await writeFile(
    path.join(modelDir, 'config.json'),
    JSON.stringify({
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      activation_function: 'gelu_new',
      n_embd: D,
      n_head: 12,
      n_layer: LAYERS,
      n_positions: 1024,
      n_ctx: 1024,
      vocab_size: VOCAB,
      layer_norm_epsilon: 1e-5,
      tie_word_embeddings: true,
    }),
  );
  return modelDir;
}
