// Resuming a training run continues from the checkpointed activation store: windows the store had
// received are not run through the model again, a cache is read from the saved row, and the SAE ends
// exactly as in an uninterrupted run (after an interruption and after a periodic checkpoint alike).
import { EventEmitter } from 'node:events';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { tap, type Observable } from 'rxjs';
import { describe, expect, it, vi } from 'vitest';
import type * as CacheReaderModule from '../src/stages/cache/cache-reader.js';
import type * as ModelActivationsModule from '../src/stages/model/model-activations.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { defineStage } from '../src/pipeline/stage.js';
import type { TokenBatch } from '../src/stages/text/index.js';
import { readStoreSnapshot, STORE_SNAPSHOT_FILE } from '../src/stages/store/index.js';
import { Mulberry32 } from '../src/util/random.js';
import { MODEL_F32 } from './gpt2-fixture.js';
import { testIo } from './runner-io.js';

/** What the model and the cache reader were asked for, per run (reset before each). */
const seen = vi.hoisted(() => ({ forwards: [] as string[], readerStarts: [] as number[] }));

vi.mock('../src/stages/model/model-activations.js', async (importOriginal) => {
  const real = await importOriginal<typeof ModelActivationsModule>();
  return {
    ...real,
    modelActivations: (options: Parameters<typeof real.modelActivations>[0]) => {
      const stage = real.modelActivations(options);
      return defineStage(stage.stageName, (source: Observable<TokenBatch>) =>
        stage(
          source.pipe(tap((b) => seen.forwards.push(`${b.batchSize}:${b.tokens.subarray(0, 12).join(',')}`))),
        ),
      );
    },
  };
});

vi.mock('../src/stages/cache/cache-reader.js', async (importOriginal) => {
  const real = await importOriginal<typeof CacheReaderModule>();
  return {
    ...real,
    cacheReader: (options: Parameters<typeof real.cacheReader>[0]) => {
      seen.readerStarts.push(options.startRow ?? 0);
      return real.cacheReader(options);
    },
  };
});

const tmp = (p: string) => path.join(mkdtempSync(path.join(tmpdir(), `saeflow-${p}-`)), 'run');

/**
 * Random token documents for the fixture model (vocabulary 1000, no BOS): with --disable_concat_sequences
 * each gives one window of 32, so a pass is 400 windows, 12,800 tokens, 25 forwards.
 */
function dataset(): string {
  const rng = new Mulberry32(7);
  const lines = Array.from({ length: 400 }, () =>
    JSON.stringify({ tokens: Array.from({ length: 40 }, () => Math.floor(rng.next() * 1000)) }),
  );
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-resume-data-')), 'tokens.jsonl');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const training = [
  ...['--backend', 'cpu', '--engine', 'onnx', '--layer', '1', '--d_sae', '64', '--architecture', 'standard'],
  ...['--train_batch_size_tokens', '256', '--n_batches_in_buffer', '4', '--training_tokens', '8000'],
];
const trainEvents = (dir: string) =>
  existsSync(path.join(dir, 'metrics.jsonl'))
    ? readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .filter((l) => l.includes('"event":"train"')).length
    : 0;
const weights = (dir: string) =>
  readFileSync(path.join(dir, 'saes', 'standard-blocks.1.hook_resid_pre', 'sae_weights.safetensors'));

async function run(args: string[], signals?: EventEmitter) {
  return runPipeline(parseCliArgs(['pipelines/gpt2-resid.ts', ...args]), testIo(signals));
}

/** Runs `args` into a new directory and stops it with SIGTERM once it has trained `steps` steps. */
async function interrupted(args: string[], steps: number): Promise<string> {
  const dir = tmp('part');
  const signals = new EventEmitter();
  const running = run([...args, '--out', dir, '--max_in_flight', '1'], signals);
  const poll = setInterval(() => {
    if (trainEvents(dir) >= steps) {
      clearInterval(poll);
      signals.emit('SIGTERM');
    }
  }, 5);
  const outcome = await running.finally(() => clearInterval(poll));
  expect(outcome?.status).toBe('interrupted');
  return dir;
}

describe('resuming a training run without recomputation', () => {
  it('runs the model only over the windows after those the checkpointed store received', async () => {
    const args = [
      '--model',
      MODEL_F32,
      '--dataset',
      dataset(),
      '--context_size',
      '32',
      '--no-prepend_bos',
      '--disable_concat_sequences',
      ...training,
    ];
    seen.forwards = [];
    const whole = tmp('whole');
    await run([...args, '--out', whole]);
    const wholeForwards = seen.forwards;

    const part = await interrupted(args, 8);
    const store = await readStoreSnapshot(path.join(part, 'checkpoint', STORE_SNAPSHOT_FILE));
    expect(store.inputBatches).toBeGreaterThan(0);
    seen.forwards = [];
    const resumed = await run(['--resume', part]);
    expect(resumed?.result).toMatchObject({ status: 'completed' });
    // The resumed model sees the stream from the first batch of windows the store had not received ...
    expect(seen.forwards[0]).toBe(wholeForwards[store.inputBatches]);
    expect(seen.forwards).toEqual(
      wholeForwards.slice(store.inputBatches, store.inputBatches + seen.forwards.length),
    );
    // ... so the two runs together forward no more than the uninterrupted one (plus what was in flight).
    expect(seen.forwards.length).toBeLessThanOrEqual(wholeForwards.length - store.inputBatches + 4);
    expect(weights(part).equals(weights(whole))).toBe(true);
  });

  it('still resumes a checkpoint without the store (written before it was saved) by replaying the stream', async () => {
    const args = [
      ...['--model', MODEL_F32, '--dataset', dataset(), '--context_size', '32', '--no-prepend_bos'],
      ...['--disable_concat_sequences', ...training],
    ];
    const whole = tmp('whole-old');
    await run([...args, '--out', whole]);
    const part = await interrupted(args, 8);
    rmSync(path.join(part, 'checkpoint', STORE_SNAPSHOT_FILE));
    const resumed = await run(['--resume', part]);
    expect(resumed?.result).toMatchObject({ status: 'completed' });
    expect(readFileSync(path.join(part, 'run.log'), 'utf8')).toMatch(/no activation store: replaying/);
    expect(weights(part).equals(weights(whole))).toBe(true);
  });

  it('continues from a periodic checkpoint of a run killed without warning as if it had not stopped', async () => {
    const args = [
      '--model',
      MODEL_F32,
      '--dataset',
      dataset(),
      '--context_size',
      '32',
      '--no-prepend_bos',
      '--disable_concat_sequences',
      ...training,
    ];
    const dir = tmp('killed');
    const copy = tmp('copy');
    // The copy taken when the first periodic checkpoint lands is the directory a SIGKILL would leave.
    const poll = setInterval(() => {
      if (existsSync(copy) || !existsSync(path.join(dir, 'checkpoint', STORE_SNAPSHOT_FILE))) return;
      try {
        cpSync(dir, copy, { recursive: true });
        rmSync(path.join(copy, 'saes'), { recursive: true, force: true });
      } catch {
        rmSync(copy, { recursive: true, force: true }); // caught mid-rename: try again on the next tick
      }
    }, 1);
    const outcome = await run([...args, '--checkpoint_every_tokens', '2048', '--out', dir]).finally(() =>
      clearInterval(poll),
    );
    expect(outcome?.result).toMatchObject({ status: 'completed' });
    expect(statSync(path.join(copy, 'checkpoint', STORE_SNAPSHOT_FILE)).size).toBeGreaterThan(0);
    const store = await readStoreSnapshot(path.join(copy, 'checkpoint', STORE_SNAPSHOT_FILE));
    expect(store.nextIndex).toBeGreaterThan(0);
    const resumed = await run(['--resume', copy]);
    expect(resumed?.result).toMatchObject({ status: 'completed' });
    expect(weights(copy).equals(weights(dir))).toBe(true);
  });

  it('seeks in an activation cache to the row after those the store received', async () => {
    const cache = tmp('cache');
    await runPipeline(
      parseCliArgs([
        'pipelines/cache-activations.ts',
        ...[
          '--model',
          MODEL_F32,
          '--dataset',
          dataset(),
          '--context_size',
          '32',
          '--no-prepend_bos',
          '--disable_concat_sequences',
        ],
        ...['--hooks', 'blocks.1.hook_resid_pre', '--backend', 'cpu', '--out', cache],
      ]),
      testIo(),
    );
    const args = ['--activations', cache, ...training];
    const whole = tmp('whole-cache');
    await run([...args, '--out', whole]);

    const part = await interrupted(args, 8);
    const store = await readStoreSnapshot(path.join(part, 'checkpoint', STORE_SNAPSHOT_FILE));
    const rows = JSON.parse(readFileSync(path.join(cache, 'manifest.json'), 'utf8')).total_tokens as number;
    expect(store.inputRows % rows).toBeGreaterThan(0);
    seen.readerStarts = [];
    const resumed = await run(['--resume', part]);
    expect(resumed?.result).toMatchObject({ status: 'completed' });
    // The first pass starts at the saved row; any later pass at the start of the cache.
    expect(seen.readerStarts[0]).toBe(store.inputRows % rows);
    expect(seen.readerStarts.slice(1).every((r) => r === 0)).toBe(true);
    expect(weights(part).equals(weights(whole))).toBe(true);
  });
});
