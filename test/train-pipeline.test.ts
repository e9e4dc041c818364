import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { testIo } from './runner-io.js';
import { Mulberry32 } from '../src/util/random.js';
import { MODEL_F32 } from './gpt2-fixture.js';

const io = testIo;
const tmp = (p: string) => path.join(mkdtempSync(path.join(tmpdir(), `saeflow-${p}-`)), 'run');

/** Random token documents that fit the tiny fixture model's 1000-token vocabulary. */
function dataset(): string {
  const rng = new Mulberry32(7);
  const lines = Array.from({ length: 60 }, () =>
    JSON.stringify({ tokens: Array.from({ length: 200 }, () => Math.floor(rng.next() * 1000)) }),
  );
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-train-data-')), 'tokens.jsonl');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const common = (data: string) => [
  ...['--model', MODEL_F32, '--dataset', data, '--context_size', '32', '--no-prepend_bos'],
  ...[
    '--disable_concat_sequences',
    '--backend',
    'cpu',
    '--train_batch_size_tokens',
    '256',
    '--n_batches_in_buffer',
    '4',
  ],
];
const trainEvents = (dir: string) =>
  readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((m) => m.event === 'train');

describe('SAE training pipelines', () => {
  it('trains a sweep of SAEs from one model stream and writes SAELens folders and metrics', async () => {
    const out = tmp('sweep');
    const sweep = JSON.stringify([
      { architecture: 'topk', k: 4, name: 'topk4' },
      { architecture: 'standard', l1_coefficient: 1, name: 'std' },
      { architecture: 'jumprelu', name: 'jr', layer: 0 },
    ]);
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/gpt2-resid.ts',
        ...common(dataset()),
        '--layer',
        '1',
        '--d_sae',
        '64',
        '--training_tokens',
        '5000',
        '--saes',
        sweep,
        '--out',
        out,
      ]),
      io(),
    );
    expect(outcome?.status).toBe('completed');
    expect(outcome?.result).toMatchObject({ status: 'completed' });
    for (const name of ['topk4', 'std', 'jr']) {
      for (const f of ['cfg.json', 'sae_weights.safetensors', 'sparsity.safetensors']) {
        expect(existsSync(path.join(out, 'saes', name, f))).toBe(true);
      }
    }
    const cfg = JSON.parse(readFileSync(path.join(out, 'saes', 'jr', 'cfg.json'), 'utf8'));
    expect(cfg.metadata.hook_name).toBe('blocks.0.hook_resid_pre');
    const events = trainEvents(out);
    expect(new Set(events.map((e) => e.sae))).toEqual(new Set(['topk4', 'std', 'jr']));
    expect(events.filter((e) => e.sae === 'topk4').every((e) => e.l0 === 4)).toBe(true);
    const first = events.find((e) => e.sae === 'std')!;
    for (const key of ['loss', 'mse', 'l0', 'explained_variance', 'dead_features', 'lr'])
      expect(first).toHaveProperty(key);
  });

  it('trains from an activation cache with one option change, with the issue example options', async () => {
    const data = dataset();
    const cache = tmp('cache');
    await runPipeline(
      parseCliArgs([
        'pipelines/cache-activations.ts',
        ...[
          '--model',
          MODEL_F32,
          '--dataset',
          data,
          '--context_size',
          '32',
          '--no-prepend_bos',
          '--disable_concat_sequences',
        ],
        ...['--hooks', 'blocks.0.hook_resid_pre', '--backend', 'cpu', '--out', cache],
      ]),
      io(),
    );
    const out = tmp('from-cache');
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/gpt2-resid.ts',
        ...[
          '--activations',
          cache,
          '--hook',
          'blocks.0.hook_resid_pre',
          '--architecture',
          'topk',
          '--k',
          '4',
        ],
        ...[
          '--d_sae',
          '128',
          '--training_tokens',
          '6000',
          '--train_batch_size_tokens',
          '512',
          '--lr',
          '0.001',
        ],
        ...['--normalize_activations', 'expected_average_only_in', '--n_batches_for_norm_estimate', '2'],
        ...['--backend', 'cpu', '--out', out],
      ]),
      io(),
    );
    expect(outcome?.status).toBe('completed');
    const cfg = JSON.parse(
      readFileSync(path.join(out, 'saes', 'topk-blocks.0.hook_resid_pre', 'cfg.json'), 'utf8'),
    );
    expect(cfg).toMatchObject({ architecture: 'topk', d_in: 64, d_sae: 128 });
    expect(trainEvents(out).length).toBeGreaterThan(5);
  });

  it('refuses a width that disagrees with the cache before training', async () => {
    const out = tmp('mismatch');
    await expect(
      runPipeline(
        parseCliArgs([
          'pipelines/gpt2-resid.ts',
          ...common(dataset()),
          ...['--layer', '0', '--saes', '[{"d_in": 32}]', '--out', out],
        ]),
        io(),
      ),
    ).rejects.toThrow(/hook 'blocks\.0\.hook_resid_pre' has width 64 .* d_in is 32/);
    expect(existsSync(path.join(out, 'metrics.jsonl')) && trainEvents(out).length).toBeFalsy();
  });

  // onnx trains in chunks of steps, so the interruption also drops batches waiting for their chunk.
  // SIGTERM (what timeout, Kubernetes and Slurm send) must checkpoint and resume exactly as Ctrl-C does.
  for (const [engine, signal] of [
    ['tfjs', 'SIGINT'],
    ['onnx', 'SIGTERM'],
  ] as const) {
    it(`an interrupted run resumed with --resume ends with the same SAE as an uninterrupted one (${engine}, ${signal})`, async () => {
      const data = dataset();
      const opts = [
        ...common(data),
        '--layer',
        '1',
        '--d_sae',
        '64',
        '--architecture',
        'standard',
        '--training_tokens',
        '8000',
        '--engine',
        engine,
      ];
      const whole = tmp('whole');
      await runPipeline(parseCliArgs(['pipelines/gpt2-resid.ts', ...opts, '--out', whole]), io());

      const part = tmp('part');
      const signals = new EventEmitter();
      const running = runPipeline(
        parseCliArgs(['pipelines/gpt2-resid.ts', ...opts, '--out', part, '--max_in_flight', '1']),
        io(signals),
      );
      await new Promise<void>((resolve) => {
        const poll = setInterval(() => {
          if (existsSync(path.join(part, 'metrics.jsonl')) && trainEvents(part).length >= 8) {
            clearInterval(poll);
            signals.emit(signal);
            resolve();
          }
        }, 5);
      });
      const first = await running;
      expect(first?.status).toBe('interrupted');
      expect(first?.signal).toBe(signal);
      expect(JSON.parse(readFileSync(path.join(part, 'run.json'), 'utf8')).status).toBe('interrupted');
      expect(existsSync(path.join(part, 'checkpoint'))).toBe(true);
      expect(existsSync(path.join(part, 'saes'))).toBe(false);
      const resumed = await runPipeline(parseCliArgs(['pipelines/gpt2-resid.ts', '--resume', part]), io());
      expect(resumed?.result).toMatchObject({ status: 'completed' });
      const weights = (dir: string) =>
        readFileSync(path.join(dir, 'saes', 'standard-blocks.1.hook_resid_pre', 'sae_weights.safetensors'));
      expect(weights(part).equals(weights(whole))).toBe(true);
      // Three trainings on TensorFlow.js's wasm backend: 60-90 s alone on 2 cores, more on a loaded machine.
    }, 300_000);
  }

  it('trains an MLP transcoder with a skip connection', async () => {
    const out = tmp('transcoder');
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/gpt2-transcoder.ts',
        ...common(dataset()),
        '--layer',
        '1',
        '--d_sae',
        '64',
        '--training_tokens',
        '3000',
        '--skip_connection',
        '--out',
        out,
      ]),
      io(),
    );
    expect(outcome?.status).toBe('completed');
    const cfg = JSON.parse(
      readFileSync(path.join(out, 'saes', 'topk-blocks.1.ln2.hook_normalized', 'cfg.json'), 'utf8'),
    );
    expect(cfg).toMatchObject({ d_in: 64, d_out: 64 });
  });
});
