/** `--engine auto`: onnx where onnxruntime runs, tfjs where it cannot, and the choice is logged. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRunner, onnxUnavailable, resolveEngine } from '../src/engine/engines.js';
import { loadModel } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { MODEL_F32 } from './gpt2-fixture.js';

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('resolveEngine', () => {
  it('auto takes onnx here, where onnxruntime-node runs, and says why', async () => {
    expect(await onnxUnavailable()).toBeNull();
    const log: string[] = [];
    expect(await resolveEngine('auto', (m) => log.push(m))).toBe('onnx');
    expect(log).toEqual(['engine: onnx (auto: onnxruntime-node runs here)']);
  });

  it('auto falls back to tfjs when onnxruntime cannot run, naming the reason', async () => {
    const log: string[] = [];
    const engine = await resolveEngine(
      'auto',
      (m) => log.push(m),
      async () => 'no onnxruntime_binding.node for this platform',
    );
    expect(engine).toBe('tfjs');
    expect(log[0]).toMatch(/engine: tfjs \(auto: onnxruntime-node cannot run here: no onnxruntime_binding/);
  });

  it('an explicit engine is taken as is', async () => {
    const log: string[] = [];
    expect(
      await resolveEngine(
        'tfjs',
        (m) => log.push(m),
        async () => null,
      ),
    ).toBe('tfjs');
    expect(
      await resolveEngine(
        'onnx',
        (m) => log.push(m),
        async () => 'broken',
      ),
    ).toBe('onnx');
    expect(log).toEqual(['engine: tfjs (requested)', 'engine: onnx (requested)']);
  });

  it('createRunner gives a runner of the engine asked for', async () => {
    const model = await loadModel(MODEL_F32);
    for (const engine of ['onnx', 'tfjs'] as const) {
      const runner = await createRunner(model, engine, { threads: 1 });
      try {
        expect(runner.engine).toBe(engine);
        const out = await runner.runWithHooks(
          { data: Int32Array.of(1, 2, 3), shape: [1, 3] },
          { hooks: 'hook_embed' },
        );
        expect(out.activations.get('hook_embed')!.shape).toEqual([1, 3, model.config.dModel]);
        // One-token windows have no next token: an empty loss, not an error.
        const single = await runner.runWithHooks(
          { data: Int32Array.of(1, 2), shape: [2, 1] },
          { returnLoss: true },
        );
        expect(single.lossPerToken!.shape).toEqual([2, 0]);
      } finally {
        await runner.dispose();
      }
    }
  });
});

describe('--engine auto where onnxruntime-node cannot load at all', () => {
  it('trains an SAE on tfjs instead of failing, and says why', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'saeflow-no-ort-'));
    try {
      const run = spawnSync(
        process.execPath,
        [
          'bin/run-pipeline.js',
          'pipelines/gpt2-resid.ts',
          '--training_tokens',
          '2048',
          '--train_batch_size_tokens',
          '1024',
          '--d_sae',
          '64',
          '--progress',
          'none',
          '--out',
          path.join(out, 'run'),
        ],
        {
          encoding: 'utf8',
          env: {
            ...process.env,
            NODE_OPTIONS: `--import ${path.resolve('test/fixtures/no-onnxruntime/register.mjs')}`,
          },
        },
      );
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout + run.stderr).toMatch(
        /engine: tfjs \(auto: onnxruntime-node cannot run here: onnxruntime-node binding unavailable \(test\)\)/,
      );
      const status = JSON.parse(readFileSync(path.join(out, 'run', 'run.json'), 'utf8')) as {
        status: string;
      };
      expect(status.status).toBe('completed');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
