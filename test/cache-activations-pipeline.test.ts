import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { activationIds, hookMatrix } from '../src/arrow/activation-batch.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { testIo } from './runner-io.js';
import { readActivationBatches } from '../src/stages/cache/index.js';
import { loadReference, MODEL_F32, ref, relErr } from './gpt2-fixture.js';

const HOOKS = ['blocks.0.hook_resid_pre', 'blocks.1.hook_mlp_out'];

const io = testIo;

/** The reference token rows as a pre-tokenized JSONL dataset, repeated `copies` times. */
async function tokenDataset(copies: number): Promise<{ file: string; seqLen: number; n: number }> {
  const r = await loadReference();
  const [n, seqLen] = r.tokens.shape;
  const lines: string[] = [];
  for (let c = 0; c < copies; c++) {
    for (let s = 0; s < n; s++) {
      lines.push(
        JSON.stringify({ tokens: Array.from(r.tokens.data.subarray(s * seqLen, (s + 1) * seqLen)) }),
      );
    }
  }
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-tokens-')), 'tokens.jsonl');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return { file, seqLen, n };
}

const args = (file: string, seqLen: number, out: string, extra: string[] = []) =>
  parseCliArgs([
    'pipelines/cache-activations.ts',
    ...['--model', MODEL_F32, '--dataset', file, '--hooks', HOOKS.join(',')],
    ...[
      '--context_size',
      String(seqLen),
      '--batch_size',
      '2',
      '--no-prepend_bos',
      '--disable_concat_sequences',
    ],
    ...['--backend', 'cpu', '--out', out, ...extra],
  ]);

describe('pipelines/cache-activations.ts', () => {
  it.each(['tfjs', 'onnx'])(
    'writes a cache whose activations match Hugging Face on the same token ids (%s)',
    async (engine) => {
      const { file, seqLen, n } = await tokenDataset(1);
      const out = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-cache-')), 'run');
      const outcome = await runPipeline(args(file, seqLen, out, ['--engine', engine]), io());
      expect(outcome?.status).toBe('completed');
      expect(outcome?.result).toMatchObject({ tokens: n * seqLen, shards: 1 });

      const r = await loadReference();
      const rows: Record<string, number[]> = Object.fromEntries(HOOKS.map((h) => [h, []]));
      const tokens: number[] = [];
      for await (const batch of readActivationBatches({ path: out })) {
        tokens.push(...activationIds(batch)!.token);
        for (const h of HOOKS) rows[h]!.push(...hookMatrix(batch, h));
      }
      expect(tokens).toEqual(Array.from(r.tokens.data));
      for (const h of HOOKS) expect(relErr(rows[h]!, ref(r, h).data)).toBeLessThan(1e-4);
      const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'));
      expect(manifest.total_tokens).toBe(n * seqLen);
    },
  );

  it('an interrupted run resumed with --resume gives byte-identical shards', async () => {
    const { file, seqLen } = await tokenDataset(40);
    const tiny = ['--shard_size_mb', '0.02'];
    const whole = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-cache-')), 'run');
    await runPipeline(args(file, seqLen, whole, tiny), io());

    const part = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-cache-')), 'run');
    const signals = new EventEmitter();
    const running = runPipeline(args(file, seqLen, part, [...tiny, '--max_in_flight', '1']), io(signals));
    // Interrupt once the first shard is on disk.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        // The runner creates the run directory once the pipeline file is loaded, which may take a while.
        if (existsSync(part) && readdirSync(part).some((f) => f === 'shard-00001.parquet')) {
          clearInterval(poll);
          signals.emit('SIGINT');
          resolve();
        }
      }, 5);
    });
    expect((await running)?.status).toBe('interrupted');
    const before = readdirSync(part).filter((f) => f.startsWith('shard-')).length;
    const resumed = await runPipeline(
      parseCliArgs(['pipelines/cache-activations.ts', '--resume', part]),
      io(),
    );
    expect(resumed?.status).toBe('completed');

    const shards = (dir: string) =>
      readdirSync(dir)
        .filter((f) => /^shard-\d+\.parquet$/.test(f))
        .sort();
    expect(shards(part)).toEqual(shards(whole));
    expect(shards(whole).length).toBeGreaterThan(before);
    for (const s of shards(whole)) {
      expect(readFileSync(path.join(part, s)).equals(readFileSync(path.join(whole, s)))).toBe(true);
    }
  });
});
