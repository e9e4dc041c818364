import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensorsHeader } from '../src/io/safetensors.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { UserError } from '../src/pipeline/errors.js';
import { TfjsOps } from '../src/ops/tfjs-ops.js';
import { architectureOf } from '../src/sae/architectures/registry.js';
import type { ParamValues } from '../src/sae/architectures/types.js';
import { STEP_ENGINES } from '../src/sae/engines/step-engine.js';
import { Sae, SaeTrainer, readSaeFolder } from '../src/sae/index.js';
import type { SaeStepMetrics, SaeTrainingConfigInput, TrainingBatch, TrainingSae } from '../src/sae/index.js';
import { Mulberry32 } from '../src/util/random.js';

const ROWS = 32;
const A = 12; // width of hook 'a'
const B = 8; // width of hook 'b'

let dir: string;
beforeAll(async () => {
  await selectBackend('wasm');
  dir = await mkdtemp(path.join(tmpdir(), 'sae-checkpoint-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Batch `index` of a deterministic stream: hook 'a' and hook 'b' (a noisy linear map of 'a'), scaled. */
function batch(index: number, scale = 1): TrainingBatch {
  const rng = new Mulberry32(1000 + index);
  const g = (): number =>
    Math.sqrt(-2 * Math.log(Math.max(rng.next(), 1e-12))) * Math.cos(2 * Math.PI * rng.next());
  const a = new Float32Array(ROWS * A).map(() => (g() + 0.5) * scale);
  const b = new Float32Array(ROWS * B);
  for (let r = 0; r < ROWS; r++)
    for (let j = 0; j < B; j++) b[r * B + j] = (a[r * A + j]! - 0.5 * a[r * A + j + 4]! + 0.1 * g()) * 2;
  return { rows: ROWS, activations: { a, b } };
}

const base = { train_batch_size_tokens: ROWS, training_tokens: ROWS * 12, lr: 1e-2 };
const transcoderAB = { hook_name: 'a', d_in: A, d_out: B, hook_name_out: 'b', skip_connection: true };

function mixedConfigs(extra: Partial<SaeTrainingConfigInput> = {}): SaeTrainingConfigInput[] {
  return [
    {
      name: 'std',
      architecture: 'standard',
      hook_name: 'a',
      d_in: A,
      d_sae: 20,
      l1_coefficient: 0.3,
      l1_warm_up_steps: 4,
      lr_warm_up_steps: 2,
      lr_decay_steps: 3,
      lr_scheduler_name: 'cosineannealing',
      b_dec_init_method: 'geometric_median',
      feature_sampling_window: 3,
      ...base,
      ...extra,
    },
    {
      name: 'topk',
      architecture: 'topk',
      hook_name: 'a',
      d_in: A,
      d_sae: 24,
      k: 3,
      dead_feature_window: 2,
      b_dec_init_method: 'mean',
      ...base,
      ...extra,
    },
    {
      name: 'btk',
      architecture: 'batchtopk',
      hook_name: 'b',
      d_in: B,
      d_sae: 16,
      k: 2.5,
      dead_feature_window: 2,
      ...base,
      ...extra,
    },
    {
      name: 'jtc',
      architecture: 'jumprelu',
      d_sae: 16,
      jumprelu_bandwidth: 0.5,
      l0_coefficient: 0.05,
      ...transcoderAB,
      ...base,
      ...extra,
    },
    {
      name: 'gated',
      architecture: 'gated',
      hook_name: 'a',
      d_in: A,
      d_sae: 18,
      l1_coefficient: 0.2,
      normalize_sae_decoder: true,
      ...base,
      ...extra,
    },
  ];
}

function bitsEqual(a: Float32Array | Float64Array, b: Float32Array | Float64Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

async function run(trainer: SaeTrainer, from: number, to: number, scale = 1): Promise<SaeStepMetrics[][]> {
  const out: SaeStepMetrics[][] = [];
  for (let i = from; i < to; i++) out.push((await trainer.step(batch(i, scale))).saes);
  return out;
}

describe.each(STEP_ENGINES)('%s step engine', (engine) => {
  describe('SAELens folders', () => {
    it('load back bit-identically, with SAELens names, shapes and cfg.json keys', async () => {
      const trainer = SaeTrainer.create(mixedConfigs(), { engine });
      await run(trainer, 0, 5);
      const out = path.join(dir, 'folders');
      await trainer.saveCheckpoint(out);
      expect((await readdir(out)).sort()).toEqual(['btk', 'gated', 'jtc', 'std', 'topk', 'trainer.json']);

      const expected: Record<string, { architecture: string; tensors: Record<string, number[]> }> = {
        std: {
          architecture: 'standard',
          tensors: { W_enc: [A, 20], b_enc: [20], W_dec: [20, A], b_dec: [A] },
        },
        topk: { architecture: 'topk', tensors: { W_enc: [A, 24], b_enc: [24], W_dec: [24, A], b_dec: [A] } },
        btk: {
          architecture: 'jumprelu',
          tensors: { W_enc: [B, 16], b_enc: [16], W_dec: [16, B], b_dec: [B], threshold: [16] },
        },
        jtc: {
          architecture: 'jumprelu_skip_transcoder',
          tensors: {
            W_enc: [A, 16],
            b_enc: [16],
            W_dec: [16, B],
            b_dec: [B],
            threshold: [16],
            W_skip: [B, A],
          },
        },
        gated: {
          architecture: 'gated',
          tensors: { W_enc: [A, 18], W_dec: [18, A], b_dec: [A], b_gate: [18], r_mag: [18], b_mag: [18] },
        },
      };
      for (const sae of trainer.saes) {
        const folder = path.join(out, sae.name);
        const want = expected[sae.name]!;
        const header = await readSafetensorsHeader(path.join(folder, 'sae_weights.safetensors'));
        expect(Object.fromEntries(Object.entries(header.tensors).map(([n, t]) => [n, t.shape]))).toEqual(
          want.tensors,
        );
        expect(Object.values(header.tensors).every((t) => t.dtype === 'F32')).toBe(true);

        const loaded = await readSaeFolder(folder);
        const weights = sae.inferenceWeights();
        for (const [name, t] of Object.entries(weights.tensors)) {
          expect(bitsEqual(loaded.tensors[name]!.data, t.data), `${sae.name}.${name}`).toBe(true);
        }
        expect(bitsEqual(loaded.sparsity!, sae.stats.logFeatureDensity())).toBe(true);

        const cfg = JSON.parse(await readFile(path.join(folder, 'cfg.json'), 'utf8')) as Record<
          string,
          unknown
        >;
        expect(cfg).toMatchObject({
          architecture: want.architecture,
          d_in: sae.cfg.d_in,
          d_sae: sae.cfg.d_sae,
          dtype: 'float32',
          device: 'cpu',
          apply_b_dec_to_input: sae.cfg.apply_b_dec_to_input,
          normalize_activations: 'none',
          reshape_activations: 'none',
          metadata: { hook_name: sae.cfg.hook_name, sae_lens_version: '6.18.0' },
        });
        if (sae.name === 'topk') expect(cfg).toMatchObject({ k: 3, rescale_acts_by_decoder_norm: true });
        if (sae.name === 'jtc') expect(cfg).toMatchObject({ d_out: B, metadata: { hook_name_out: 'b' } });
      }
      trainer.dispose();
    });

    it('refuses a folder whose tensors do not match cfg.json, naming the tensor', async () => {
      const trainer = SaeTrainer.create([{ name: 'x', hook_name: 'a', d_in: A, d_sae: 10, ...base }], {
        engine,
      });
      const out = path.join(dir, 'mismatch');
      await trainer.saveCheckpoint(out, { trainerState: false });
      trainer.dispose();
      const cfgPath = path.join(out, 'x', 'cfg.json');
      const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
      const { writeFile } = await import('node:fs/promises');
      await writeFile(cfgPath, JSON.stringify({ ...cfg, d_sae: 11 }));
      await expect(readSaeFolder(path.join(out, 'x'))).rejects.toThrow(
        /tensor 'W_enc' has shape \[12, 10\], expected \[12, 11\]/,
      );
      await writeFile(cfgPath, JSON.stringify({ ...cfg, architecture: 'mystery' }));
      await expect(readSaeFolder(path.join(out, 'x'))).rejects.toThrow(
        /architecture "mystery" is not supported/,
      );
    });
  });

  /** x̂ of the training-time model on normalised inputs, mapped back to raw units. */
  function trainingReconstruction(sae: TrainingSae, x: Float32Array, rows: number): Float32Array {
    return tf.tidy(() => {
      const cfg = sae.cfg;
      const xs = tf.mul(tf.tensor2d(x, [rows, cfg.d_in]), sae.scaleIn) as tf.Tensor2D;
      const p = Object.fromEntries(
        Object.entries(sae.hostParams()).map(([n, t]) => [n, tf.tensor(t.data, t.shape)]),
      ) as ParamValues<tf.Tensor>;
      let recon: tf.Tensor;
      if (cfg.architecture === 'batchtopk') {
        // Inference form of batchtopk: JumpReLU on the decoder-norm-rescaled pre-activations.
        const xc = cfg.apply_b_dec_to_input ? tf.sub(xs, p.b_dec!) : xs;
        const norms = tf.sqrt(tf.sum(tf.square(p.W_dec!), 1));
        const hr = tf.mul(tf.add(tf.matMul(xc, p.W_enc as tf.Tensor2D), p.b_enc!), norms);
        const f = tf.mul(tf.relu(hr), tf.cast(tf.greater(hr, sae.topkThreshold), 'float32'));
        recon = tf.add(tf.matMul(tf.div(f, norms) as tf.Tensor2D, p.W_dec as tf.Tensor2D), p.b_dec!);
      } else {
        // The training forward itself, W_dec in the step's [d_out, d_sae] layout.
        const target = cfg.d_out === null ? xs : tf.zeros([rows, cfg.d_out]);
        const stepParams: ParamValues<tf.Tensor> = { ...p, W_dec: tf.transpose(p.W_dec!) };
        const input = { x: xs, target, invRows: tf.scalar(1 / rows), coefficient: tf.scalar(0) };
        const o = new TfjsOps();
        recon = architectureOf(cfg.architecture).train(o, stepParams, input, cfg).reconstruction;
      }
      return Float32Array.from(tf.div(recon, sae.scaleOut).dataSync());
    });
  }

  describe('normalisation folding', () => {
    const configs = (unit: boolean): SaeTrainingConfigInput[] =>
      mixedConfigs({ normalize_activations: 'expected_average_only_in', n_batches_for_norm_estimate: 2 }).map(
        (c) => ({
          ...c,
          normalize_sae_decoder: unit || c.normalize_sae_decoder,
          // A transcoder's input and output get different factors, so b_dec cannot also be subtracted.
          ...(c.d_out !== undefined ? { apply_b_dec_to_input: false } : {}),
        }),
      );

    for (const unit of [false, true]) {
      it(`leaves the saved SAE's reconstructions of raw activations unchanged${unit ? ' (unit-norm decoders)' : ''}`, async () => {
        const trainer = SaeTrainer.create(configs(unit), { engine });
        const phases: string[] = [];
        for (const i of [0, 1, 2, 3, 4, 5]) phases.push((await trainer.step(batch(i, 25))).phase);
        expect(phases).toEqual(['norm_estimate', 'norm_estimate', 'train', 'train', 'train', 'train']);
        const out = path.join(dir, `fold-${unit}`);
        await trainer.saveCheckpoint(out);
        const raw = batch(99, 25);
        for (const sae of trainer.saes) {
          expect(sae.scaleIn).toBeLessThan(0.1);
          const saved = await Sae.load(path.join(out, sae.name));
          const xs = raw.activations[sae.cfg.hook_name]!;
          const got = tf.tidy(() => saved.forward(tf.tensor2d(xs, [ROWS, sae.cfg.d_in])).dataSync());
          const want = trainingReconstruction(sae, xs, ROWS);
          const scale = Math.max(...Array.from(want, Math.abs));
          want.forEach((v, i) =>
            expect(Math.abs(got[i]! - v), `${sae.name}[${i}]`).toBeLessThan(2e-5 * scale),
          );
          saved.dispose();
          if (unit) {
            const folder = await readSaeFolder(path.join(out, sae.name));
            const w = folder.tensors.W_dec!;
            const [rows, cols] = w.shape as [number, number];
            for (let r = 0; r < rows; r++) {
              let sq = 0;
              for (let c = 0; c < cols; c++) sq += w.data[r * cols + c]! ** 2;
              expect(Math.abs(Math.sqrt(sq) - 1), `${sae.name} row ${r}`).toBeLessThan(1e-6);
            }
          }
        }
        trainer.dispose();
      });
    }

    it('keeps decoder rows at unit norm throughout training under normalize_sae_decoder', async () => {
      const trainer = SaeTrainer.create(mixedConfigs({ normalize_sae_decoder: true }), { engine });
      await run(trainer, 0, 6);
      for (const sae of trainer.saes) {
        const W = sae.hostParams().W_dec!;
        const norms = tf.tidy(() => tf.sqrt(tf.sum(tf.square(tf.tensor(W.data, W.shape)), 1)).dataSync());
        norms.forEach((n, r) => expect(Math.abs(n - 1), `${sae.name} row ${r}`).toBeLessThan(1e-6));
      }
      trainer.dispose();
    });
  });

  describe('resumption', () => {
    it('continues bit-identically to an uninterrupted run', async () => {
      const cfgs = mixedConfigs({
        normalize_activations: 'expected_average_only_in',
        n_batches_for_norm_estimate: 2,
      }).map((c) => (c.d_out !== undefined ? { ...c, apply_b_dec_to_input: false } : c));
      const total = 2 + 12;
      const straight = SaeTrainer.create(cfgs, { engine });
      const straightMetrics = await run(straight, 0, total, 3);
      expect(straight.done).toBe(true);

      const first = SaeTrainer.create(cfgs, { engine });
      await run(first, 0, 7, 3);
      const ckpt = path.join(dir, 'resume');
      await first.saveCheckpoint(ckpt);
      first.dispose();
      const resumed = await SaeTrainer.resume(ckpt, { configs: cfgs, engine });
      expect(resumed.batches).toBe(7);
      const resumedMetrics = await run(resumed, 7, total, 3);
      expect(resumed.done).toBe(true);

      expect(JSON.stringify(resumedMetrics)).toBe(JSON.stringify(straightMetrics.slice(7)));
      for (const [i, sae] of straight.saes.entries()) {
        const other = resumed.saes[i]!;
        const a = sae.hostParams();
        const b = other.hostParams();
        for (const name of Object.keys(a))
          expect(bitsEqual(a[name]!.data, b[name]!.data), `${sae.name}.${name}`).toBe(true);
        for (const which of ['m', 'v'] as const) {
          const theirs = other.hostMoments(which);
          for (const [name, t] of Object.entries(sae.hostMoments(which))) {
            expect(bitsEqual(t.data, theirs[name]!.data), `${sae.name} adam.${which}.${name}`).toBe(true);
          }
        }
        expect(bitsEqual(sae.stats.totalCounts, other.stats.totalCounts)).toBe(true);
        expect(bitsEqual(sae.stats.sinceFired, other.stats.sinceFired)).toBe(true);
        expect(other.topkThreshold).toBe(sae.topkThreshold);
      }
      // The final folders are byte-identical too.
      const outA = path.join(dir, 'final-a');
      const outB = path.join(dir, 'final-b');
      await straight.saveCheckpoint(outA);
      await resumed.saveCheckpoint(outB);
      for (const name of ['std', 'topk', 'btk', 'jtc', 'gated']) {
        for (const file of [
          'cfg.json',
          'sae_weights.safetensors',
          'sparsity.safetensors',
          'trainer_state.safetensors',
        ]) {
          const x = await readFile(path.join(outA, name, file));
          const y = await readFile(path.join(outB, name, file));
          expect(x.equals(y), `${name}/${file}`).toBe(true);
        }
      }
      straight.dispose();
      resumed.dispose();
    });

    it('refuses to resume with a changed option, naming it', async () => {
      const cfgs = mixedConfigs();
      const trainer = SaeTrainer.create(cfgs, { engine });
      await run(trainer, 0, 2);
      const ckpt = path.join(dir, 'changed');
      await trainer.saveCheckpoint(ckpt);
      trainer.dispose();
      const changed = cfgs.map((c) => (c.name === 'topk' ? { ...c, k: 4 } : c));
      await expect(SaeTrainer.resume(ckpt, { configs: changed, engine })).rejects.toThrow(
        /SAE 'topk'.*option 'k' was 3 and is now 4/,
      );
      await expect(SaeTrainer.resume(path.join(dir, 'nowhere'))).rejects.toThrow(/not a trainer checkpoint/);
    });
  });

  describe('memory', () => {
    it('the number of live tensors stays constant over many steps', async () => {
      const trainer = SaeTrainer.create(mixedConfigs({ training_tokens: ROWS * 10_000 }), { engine });
      await run(trainer, 0, 10);
      const before = tf.memory().numTensors;
      await run(trainer, 10, 210);
      expect(tf.memory().numTensors).toBe(before);
      trainer.dispose();
    });
  });

  describe('bad input and divergence', () => {
    const one = (extra: Partial<SaeTrainingConfigInput> = {}): SaeTrainingConfigInput[] => [
      { name: 'std', hook_name: 'a', d_in: A, d_sae: 10, ...base, ...extra },
    ];

    it('NaN in the activations is a UserError naming the batch, hook, position and SAE; nothing is trained', async () => {
      const trainer = SaeTrainer.create(one(), { engine });
      await run(trainer, 0, 2);
      const before = trainer.saes[0]!.hostParams();
      const bad = batch(2);
      bad.activations.a![3 * A + 2] = NaN;
      await expect(trainer.step(bad)).rejects.toThrow(UserError);
      await expect(trainer.step(bad)).rejects.toThrow(
        /batch 2 \(step 2\): activations of hook 'a' contain NaN at token 3, dimension 2 \(read by SAE 'std'\)/,
      );
      const after = trainer.saes[0]!.hostParams();
      for (const name of Object.keys(before))
        expect(bitsEqual(before[name]!.data, after[name]!.data)).toBe(true);
      expect(trainer.saes[0]!.step).toBe(2);
      trainer.dispose();
    });

    it('a loss that overflows is a UserError naming the step and SAE, and keeps the last good parameters', async () => {
      const trainer = SaeTrainer.create(one(), { engine });
      await run(trainer, 0, 1);
      const before = trainer.saes[0]!.hostParams();
      await expect(trainer.step(batch(1, 1e30))).rejects.toThrow(
        /step 1: SAE 'std' diverged: the loss is not finite \(mse_loss=Infinity/,
      );
      const after = trainer.saes[0]!.hostParams();
      for (const name of Object.keys(before))
        expect(bitsEqual(before[name]!.data, after[name]!.data)).toBe(true);
      trainer.dispose();
    });

    it('never overwrites a good checkpoint with non-finite parameters', async () => {
      const trainer = SaeTrainer.create(one(), { engine });
      await run(trainer, 0, 2);
      const ckpt = path.join(dir, 'good');
      await trainer.saveCheckpoint(ckpt);
      const good = trainer.saes[0]!.hostParams();
      const sae = trainer.saes[0]!;
      sae.engine.setParam('W_enc', new Float32Array(A * 10).fill(NaN));
      await expect(trainer.saveCheckpoint(ckpt)).rejects.toThrow(
        /not saving .*SAE 'std' has non-finite values in W_enc/,
      );
      trainer.dispose();
      const back = await SaeTrainer.resume(ckpt, { engine });
      expect(bitsEqual(back.saes[0]!.hostParams().W_enc!.data, good.W_enc!.data)).toBe(true);
      back.dispose();
    });

    it('width mismatches are caught before training, naming hook, SAE and field', async () => {
      const trainer = SaeTrainer.create(
        [...one(), { name: 'tc', architecture: 'topk', k: 2, d_sae: 10, ...transcoderAB, ...base }],
        { engine },
      );
      expect(trainer.hooks).toEqual(['a', 'b']);
      expect(() => trainer.checkHookWidths({ a: A, b: B + 1 }, 'cache manifest')).toThrow(
        /SAE 'tc': hook 'b' has width 9 in cache manifest but d_out is 8/,
      );
      expect(() => trainer.checkHookWidths({ a: A })).toThrow(
        /SAE 'tc' reads hook 'b', which the activations do not provide/,
      );
      trainer.checkHookWidths({ a: A, b: B });
      const wrong = batch(0);
      await expect(
        trainer.step({
          rows: ROWS,
          activations: { a: wrong.activations.a!.subarray(0, ROWS * 10), b: wrong.activations.b! },
        }),
      ).rejects.toThrow(/batch 0: hook 'a' has width 10 for 32 tokens but SAE 'std' has d_in = 12/);
      await expect(trainer.step({ rows: ROWS, activations: { a: wrong.activations.a! } })).rejects.toThrow(
        /SAE 'tc' reads hook 'b', which the batch lacks/,
      );
      trainer.dispose();
    });
  });

  describe('dead features and sparsity', () => {
    it('reports dead features, closes feature-sampling windows and histograms log densities', async () => {
      const trainer = SaeTrainer.create(
        [
          {
            name: 'tk',
            architecture: 'topk',
            k: 1,
            hook_name: 'a',
            d_in: A,
            d_sae: 64,
            dead_feature_window: 3,
            feature_sampling_window: 4,
            ...base,
          },
        ],
        { engine },
      );
      const metrics = (await run(trainer, 0, 8)).map((m) => m[0]!);
      const sae = trainer.saes[0]!;
      expect(metrics.map((m) => m.sparsity !== undefined)).toEqual([
        false,
        false,
        false,
        true,
        false,
        false,
        false,
        true,
      ]);
      const report = metrics[7]!.sparsity!;
      expect(report.histogram.counts.reduce((a, b) => a + b, 0)).toBe(64);
      expect(report.window_tokens).toBe(4 * ROWS);
      expect(metrics.every((m) => m.l0 === 1)).toBe(true);
      // topk with k = 1 fires few of 64 features: some never fire and count as dead once past the window.
      const dead = Array.from(sae.stats.sinceFired).filter((s) => s > 3).length;
      expect(dead).toBeGreaterThan(0);
      expect(metrics[7]!.dead_features).toBe(dead);
      expect(metrics[7]!.losses.auxiliary_reconstruction_loss).toBeGreaterThan(0);
      const firedOnce = Array.from(sae.stats.totalCounts).filter((c) => c > 0).length;
      expect(firedOnce).toBeLessThan(64);
      trainer.dispose();
    });
  });
});
