/**
 * The model's tokenizer in the page, from the same code Node runs: GPT-2's BPE from src/tokenizer/gpt2.ts
 * (gpt-tokenizer), any other tokenizer.json through @huggingface/tokenizers with the options
 * src/tokenizer/hf-tokenizer.ts uses (no special tokens added; the manifest's BOS is prepended as in
 * the SAE's training windows).
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { decodeGpt2, encodeGpt2, GPT2_VOCAB_SIZE } from '../../tokenizer/gpt2.js';
import { encodeWithoutSpecialTokens } from '../../tokenizer/hf-tokenizer.js';
import type { ExplorerManifest } from '../manifest.js';

export interface PageTokenizer {
  encode(text: string): number[];
  decodeToken(id: number): string;
}

async function fetchJson(url: string): Promise<Record<string, unknown>> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (await r.json()) as Record<string, unknown>;
}

export async function loadPageTokenizer(manifest: ExplorerManifest): Promise<PageTokenizer> {
  const spec = manifest.tokenizer;
  if (spec.kind === 'gpt2') {
    return {
      encode: (text) => Array.from(encodeGpt2(text)),
      decodeToken: (id) => (id >= 0 && id < GPT2_VOCAB_SIZE ? decodeGpt2([id]) : `<${id}>`),
    };
  }
  const [json, config] = await Promise.all([fetchJson(spec.files.tokenizer), fetchJson(spec.files.config)]);
  const library = new Tokenizer(json, config);
  return {
    encode: (text) => Array.from(encodeWithoutSpecialTokens(library, text)),
    decodeToken: (id) => (library.id_to_token(id) === undefined ? `<${id}>` : library.decode([id])),
  };
}
