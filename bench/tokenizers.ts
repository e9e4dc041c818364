// Tokens per second of each tokenizer path on the embedded Moby-Dick text (1.2M characters), one thread:
// GPT-2's gpt-tokenizer path, and every family fixture's tokenizer.json through @huggingface/tokenizers.
// Run: npx tsx bench/tokenizers.ts [repeats]
import path from 'node:path';
import { loadCorpus } from '../src/stages/text/index.js';
import { gpt2Tokenizer, loadTokenizer, type Tokenizer } from '../src/tokenizer/index.js';
import { PIECE_CHARS, textPieces } from '../src/stages/text/sources/text-pieces.js';

const repeats = Number(process.argv[2] ?? 3);
const text = loadCorpus('moby-dick')
  .map((d) => d.text)
  .join('\n\n');

async function pieces(): Promise<string[]> {
  const out: string[] = [];
  for await (const p of textPieces([text], PIECE_CHARS)) out.push(p);
  return out;
}

async function measure(name: string, t: Tokenizer): Promise<void> {
  const parts = await pieces();
  let best = Infinity;
  let tokens = 0;
  for (let r = 0; r < repeats; r++) {
    const start = performance.now();
    tokens = 0;
    for (const p of parts) tokens += t.encode(p).length;
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  console.log(
    `${name.padEnd(10)} ${(text.length / 1e6).toFixed(2)}M chars  ${tokens} tokens  ${(tokens / best / 1e6).toFixed(2)}M tok/s  ${(text.length / best / 1e6).toFixed(2)} MB/s`,
  );
}

await measure('gpt2', gpt2Tokenizer);
for (const family of ['gemma2', 'llama', 'qwen2', 'gpt_neox']) {
  await measure(family, await loadTokenizer(path.join('test', 'fixtures', 'families', family, 'model')));
}
