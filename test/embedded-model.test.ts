// The embedded model (models/tiny-gpt2) is what quickstarts and tests load offline; these checks catch a
// file that was truncated, re-saved with other shapes or dtypes, or retrained without its record.
// They read the files with plain Node so they stay independent of the library's own loaders.
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MODEL_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny-gpt2');

interface TensorInfo {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function readSafetensors(path: string): { header: Record<string, TensorInfo>; meta: unknown; data: Buffer } {
  const file = readFileSync(path);
  const headerLength = Number(file.readBigUInt64LE(0));
  expect(headerLength).toBeLessThan(1_000_000);
  const parsed = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>;
  const { __metadata__: meta, ...tensors } = parsed;
  return { header: tensors as Record<string, TensorInfo>, meta, data: file.subarray(8 + headerLength) };
}

describe('embedded tiny GPT-2 (models/tiny-gpt2)', () => {
  const config = JSON.parse(readFileSync(join(MODEL_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
  const { header, meta, data } = readSafetensors(join(MODEL_DIR, 'model.safetensors'));

  it('has a GPT-2 config with the real vocabulary and tied embeddings', () => {
    expect(config).toMatchObject({
      model_type: 'gpt2',
      vocab_size: 50257,
      n_positions: 128,
      n_embd: 64,
      n_layer: 4,
      n_head: 4,
      activation_function: 'gelu_new',
      tie_word_embeddings: true,
      bos_token_id: 50256,
      eos_token_id: 50256,
    });
  });

  it('stores every GPT-2 tensor in float16 with the shapes the config implies', () => {
    const d = config.n_embd as number;
    const expected: Record<string, number[]> = {
      'transformer.wte.weight': [50257, d],
      'transformer.wpe.weight': [128, d],
      'transformer.ln_f.weight': [d],
      'transformer.ln_f.bias': [d],
    };
    for (let l = 0; l < (config.n_layer as number); l++) {
      const p = `transformer.h.${l}`;
      Object.assign(expected, {
        [`${p}.ln_1.weight`]: [d],
        [`${p}.ln_1.bias`]: [d],
        [`${p}.attn.c_attn.weight`]: [d, 3 * d],
        [`${p}.attn.c_attn.bias`]: [3 * d],
        [`${p}.attn.c_proj.weight`]: [d, d],
        [`${p}.attn.c_proj.bias`]: [d],
        [`${p}.ln_2.weight`]: [d],
        [`${p}.ln_2.bias`]: [d],
        [`${p}.mlp.c_fc.weight`]: [d, 4 * d],
        [`${p}.mlp.c_fc.bias`]: [4 * d],
        [`${p}.mlp.c_proj.weight`]: [4 * d, d],
        [`${p}.mlp.c_proj.bias`]: [d],
      });
    }
    expect(meta).toEqual({ format: 'pt' });
    expect(Object.keys(header).sort()).toEqual(Object.keys(expected).sort());
    let end = 0;
    for (const [name, info] of Object.entries(header)) {
      expect(info.dtype, name).toBe('F16');
      expect(info.shape, name).toEqual(expected[name]);
      const [from, to] = info.data_offsets;
      expect(to - from, name).toBe(2 * info.shape.reduce((a, b) => a * b, 1));
      end = Math.max(end, to);
    }
    expect(end).toBe(data.length);
  });

  it('holds finite, trained weights', () => {
    const halves = new Uint16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
    let nonFinite = 0;
    for (const h of halves) if ((h & 0x7c00) === 0x7c00) nonFinite++;
    expect(nonFinite).toBe(0);
    // LayerNorm gains start at exactly 1.0 (0x3c00); training moves them.
    const [from, to] = header['transformer.ln_f.weight']!.data_offsets;
    const gains = halves.subarray(from / 2, to / 2);
    expect(gains.filter((g) => g === 0x3c00).length).toBeLessThan(gains.length / 2);
  });

  it('records a held-out loss well below the unigram baseline, and a small file', () => {
    const record = JSON.parse(readFileSync(join(MODEL_DIR, 'training.json'), 'utf8')) as {
      loss_nats_per_token: Record<string, number>;
      model: { model_safetensors_bytes: number };
    };
    const loss = record.loss_nats_per_token;
    expect(loss.val_float32! + 0.3).toBeLessThan(loss.val_unigram_baseline!);
    expect(Math.abs(loss.val_float16_weights! - loss.val_float32!)).toBeLessThan(0.01);
    const size = statSync(join(MODEL_DIR, 'model.safetensors')).size;
    expect(record.model.model_safetensors_bytes).toBe(size);
    expect(size).toBeLessThan(8_500_000);
  });
});
