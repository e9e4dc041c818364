// The evaluator takes published formats, not only SAELens folders: here a sparsify TopK SAE folder.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../src/io/safetensors.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { Mulberry32 } from '../src/util/random.js';
import { randomWindows, tempDir, tokenJsonl } from './eval-helpers.js';
import { MODEL_F32 } from './gpt2-fixture.js';
import { testIo } from './runner-io.js';

async function sparsifyFolder(dir: string, dIn: number, latents: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const rng = new Mulberry32(5);
  const rand = (n: number, scale: number) =>
    Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
  writeFileSync(
    path.join(dir, 'cfg.json'),
    JSON.stringify({
      activation: 'topk',
      num_latents: latents,
      k: 4,
      normalize_decoder: true,
      multi_topk: false,
      skip_connection: false,
      transcode: false,
      d_in: dIn,
    }),
  );
  await writeSafetensors(path.join(dir, 'sae.safetensors'), {
    'encoder.weight': { dtype: 'F32', shape: [latents, dIn], data: rand(latents * dIn, 0.2) },
    'encoder.bias': { dtype: 'F32', shape: [latents], data: rand(latents, 0.01) },
    W_dec: { dtype: 'F32', shape: [latents, dIn], data: rand(latents * dIn, 0.2) },
    b_dec: { dtype: 'F32', shape: [dIn], data: new Float32Array(dIn) },
  });
}

describe('eval-sae on a published format', () => {
  it('evaluates a sparsify SAE folder (layers.1 -> blocks.1.hook_resid_post)', async () => {
    const root = tempDir('eval-sparsify');
    const folder = path.join(root, 'layers.1');
    await sparsifyFolder(folder, 64, 96);
    const out = path.join(root, 'run');
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/eval-sae.ts',
        ...['--sae', folder, '--model', MODEL_F32, '--dataset', tokenJsonl(randomWindows(6, 16, 7))],
        ...[
          '--context_size',
          '16',
          '--n_eval_tokens',
          '64',
          '--no-prepend_bos',
          '--disable_concat_sequences',
        ],
        ...['--n_dashboard_features', '0', '--backend', 'cpu', '--out', out],
      ]),
      testIo(),
    );
    expect(outcome?.status).toBe('completed');
    const e = JSON.parse(readFileSync(path.join(out, 'layers.1', 'eval.json'), 'utf8'));
    const metrics = e.metrics ?? e;
    expect(metrics.l0).toBeLessThanOrEqual(4);
    expect(Number.isFinite(metrics.ce_loss_score)).toBe(true);
  });
});
