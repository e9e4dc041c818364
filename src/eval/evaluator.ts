/**
 * Evaluates SAEs (and transcoders) on token batches through the model, streaming: per batch one clean
 * forward (capturing every hook the SAEs read or reconstruct, with logits and losses), one zero-ablation
 * forward per replaced hook, and one forward per SAE with its hook replaced by the SAE's output. Metrics are
 * accumulated in float64; nothing grows with the number of batches.
 *
 * Conventions, from SAELens's `sae_lens/evals.py` (`run_evals` with `ignore_tokens`):
 * - Excluded (special) tokens are left out of every metric: reconstruction and sparsity at their position,
 *   KL at their position, CE where they are the input token (loss position p predicts token p + 1 from
 *   token p). During the with-SAE forward those positions keep their original activation; the zero
 *   ablation replaces every position.
 * - CE and KL are averaged over all kept positions of all batches; KL includes each window's last position.
 * - The reconstruction and sparsity metrics use the activations of the clean forward, which are the SAE's
 *   inputs in the patched forward too (everything before the hook is unchanged).
 * Differences: SAELens's hook_z replacement ignores the token mask (it replaces every position); here every
 * hook keeps excluded positions alike. Its KL multiplies p·log p directly (NaN where a probability underflows
 * to 0); here KL is Σ p (a - b) + lse(b) - lse(a) over logits, which has no such case. For the
 * reconstruction metrics see reconstruction-metrics.ts.
 * Transcoders read `hookIn` and reconstruct `hookOut`: in the patched forward their input is taken at
 * `hookIn` and their output replaces `hookOut` later in that same forward; the metrics compare it with the
 * clean `hookOut`, and zero ablation zeroes `hookOut`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Gpt2Model, Intervention, TokenBatch as ModelTokenBatch } from '../model/index.js';
import type { TokenBatch } from '../stages/text/types.js';
import { DownstreamAccumulator, ReferenceDistribution } from './downstream-metrics.js';
import type { DownstreamMetrics } from './downstream-metrics.js';
import { ReconstructionAccumulator } from './reconstruction-metrics.js';
import type { ReconstructionMetrics } from './reconstruction-metrics.js';
import { hookWidth } from './sae-targets.js';
import type { EvalTarget } from './sae-targets.js';
import { SparsityAccumulator } from './sparsity-metrics.js';
import type { SparsityResult } from './sparsity-metrics.js';

export interface EvaluatorOptions {
  /** Token ids left out of every metric (SAELens `ignore_tokens`); empty keeps every token. */
  excludeTokenIds?: readonly number[];
  /**
   * Compute the KL divergences (default true). They need every forward's full logits on the host, which
   * costs about as much as the forwards themselves with a 50k vocabulary; without them the KL metrics are null.
   */
  computeKl?: boolean;
}

export type EvalMetrics = ReconstructionMetrics &
  DownstreamMetrics &
  SparsityResult['metrics'] & {
    /** Tokens the reconstruction and sparsity metrics were taken over. */
    n_tokens: number;
  };

export interface SaeEvalResult {
  target: EvalTarget;
  metrics: EvalMetrics;
  sparsity: SparsityResult;
}

interface TargetState {
  target: EvalTarget;
  widthIn: number;
  widthOut: number;
  reconstruction: ReconstructionAccumulator;
  sparsity: SparsityAccumulator;
  downstream: DownstreamAccumulator;
}

/** 1 for tokens to keep, 0 for excluded ids; undefined when every token is kept. */
export function keepMask(tokens: Int32Array, excluded: ReadonlySet<number>): Uint8Array | undefined {
  if (excluded.size === 0) return undefined;
  let any = false;
  const keep = new Uint8Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const k = excluded.has(tokens[i]!) ? 0 : 1;
    keep[i] = k;
    if (k === 0) any = true;
  }
  return any ? keep : undefined;
}

/** The token mask in the layout of per-position losses [batch, seq - 1]: position p is kept when token p is. */
export function lossMask(keep: Uint8Array | undefined, batch: number, seq: number): Uint8Array | undefined {
  if (!keep) return undefined;
  const out = new Uint8Array(batch * (seq - 1));
  for (let b = 0; b < batch; b++) out.set(keep.subarray(b * seq, b * seq + seq - 1), b * (seq - 1));
  return out;
}

/** Where `keep` is 1 the replacement, elsewhere the original (both [rows, width]). */
function keepReplaced(replacement: tf.Tensor, original: tf.Tensor, keep: Uint8Array | undefined): tf.Tensor {
  if (!keep) return replacement;
  const m = tf.tensor2d(Float32Array.from(keep), [keep.length, 1]);
  return tf.add(tf.mul(replacement, m), tf.mul(original, tf.sub(1, m)));
}

export class SaeEvaluator {
  private readonly states: TargetState[];
  private readonly excluded: ReadonlySet<number>;
  private readonly captureHooks: string[];
  private readonly computeKl: boolean;
  private tokensSeen = 0;

  constructor(
    readonly model: Gpt2Model,
    readonly targets: readonly EvalTarget[],
    options: EvaluatorOptions = {},
  ) {
    this.excluded = new Set(options.excludeTokenIds ?? []);
    this.computeKl = options.computeKl ?? true;
    this.states = targets.map((target) => {
      const widthIn = hookWidth(model.config, target.hookIn);
      const widthOut = hookWidth(model.config, target.hookOut);
      return {
        target,
        widthIn,
        widthOut,
        reconstruction: new ReconstructionAccumulator(widthOut),
        sparsity: new SparsityAccumulator(target.config.d_sae),
        downstream: new DownstreamAccumulator(),
      };
    });
    this.captureHooks = [...new Set(targets.flatMap((t) => [t.hookIn.name, t.hookOut.name]))];
  }

  /** Token positions run through the model so far (before exclusions). */
  get tokens(): number {
    return this.tokensSeen;
  }

  async evaluateBatch(batch: TokenBatch): Promise<void> {
    const { batchSize, contextSize } = batch;
    const rows = batchSize * contextSize;
    const tokens: ModelTokenBatch = { data: batch.tokens, shape: [batchSize, contextSize] };
    const keep = keepMask(batch.tokens, this.excluded);
    const keepLoss = lossMask(keep, batchSize, contextSize);

    const withLogits = this.computeKl;
    const clean = await this.model.runWithHooks(tokens, {
      hooks: this.captureHooks,
      returnLogits: withLogits,
      returnLoss: true,
    });
    const reference = withLogits
      ? new ReferenceDistribution(clean.logits!.data, rows, this.model.config.vocabSize)
      : null;
    const cleanLoss = clean.lossPerToken!.data;
    // Zero ablation depends only on the replaced hook: shared by the SAEs that replace the same one.
    const ablations = new Map<string, { loss: Float32Array; kl: Float64Array | null }>();

    for (const state of this.states) {
      const { target } = state;
      const out = target.hookOut.name;
      let ablation = ablations.get(out);
      if (!ablation) {
        const run = await this.model.runWithHooks(tokens, {
          interventions: { [out]: (a) => tf.zerosLike(a) },
          returnLogits: withLogits,
          returnLoss: true,
        });
        ablation = { loss: run.lossPerToken!.data, kl: reference?.klAgainst(run.logits!.data) ?? null };
        ablations.set(out, ablation);
      }
      const patched = await this.runPatched(state, tokens, rows, keep, withLogits);
      const target_ = clean.activations.get(out)!.data;
      state.reconstruction.add(target_, patched.reconstruction, rows, keep);
      state.sparsity.add(patched.features, rows, keep);
      state.downstream.addCe(cleanLoss, patched.loss, ablation.loss, keepLoss);
      if (reference && ablation.kl && patched.logits) {
        state.downstream.addKl(reference.klAgainst(patched.logits), ablation.kl, keep);
      }
    }
    this.tokensSeen += rows;
  }

  /**
   * The forward with the SAE spliced in. Its feature activations and reconstruction are copied out of the
   * intervention itself, so the SAE runs once per batch.
   */
  private async runPatched(
    state: TargetState,
    tokens: ModelTokenBatch,
    rows: number,
    keep: Uint8Array | undefined,
    withLogits: boolean,
  ): Promise<{
    features: Float32Array;
    reconstruction: Float32Array;
    loss: Float32Array;
    logits: Float32Array | undefined;
  }> {
    const { target, widthIn, widthOut } = state;
    const sae = target.sae;
    let features: Float32Array | undefined;
    let reconstruction: Float32Array | undefined;
    const encodeAndReconstruct = (x: tf.Tensor2D): tf.Tensor2D => {
      const f = sae.encode(x);
      // decode(f) is forward(x) except where a per-token input normalisation must be undone (SAEs only).
      const xHat =
        target.transcoder || target.config.normalize_activations === 'none'
          ? sae.decode(f, x)
          : sae.forward(x);
      features = (f.dataSync() as Float32Array).slice();
      reconstruction = (xHat.dataSync() as Float32Array).slice();
      return xHat;
    };
    const interventions: Record<string, Intervention> = {};
    if (!target.transcoder) {
      interventions[target.hookIn.name] = (a) => {
        const x = tf.reshape(a, [rows, widthIn]) as tf.Tensor2D;
        return tf.reshape(keepReplaced(encodeAndReconstruct(x), x, keep), a.shape);
      };
    } else {
      interventions[target.hookIn.name] = (a) => {
        encodeAndReconstruct(tf.reshape(a, [rows, widthIn]) as tf.Tensor2D);
        return a;
      };
      interventions[target.hookOut.name] = (a) => {
        if (!reconstruction)
          throw new Error(`transcoder ${target.name}: output hook reached before input hook`);
        const y = tf.reshape(a, [rows, widthOut]);
        const yHat = tf.tensor2d(reconstruction, [rows, widthOut]);
        return tf.reshape(keepReplaced(yHat, y, keep), a.shape);
      };
    }
    const run = await this.model.runWithHooks(tokens, {
      interventions,
      returnLogits: withLogits,
      returnLoss: true,
    });
    if (!features || !reconstruction) throw new Error(`SAE ${target.name}: its hook was not reached`);
    return { features, reconstruction, loss: run.lossPerToken!.data, logits: run.logits?.data };
  }

  results(): SaeEvalResult[] {
    return this.states.map((s) => {
      const sparsity = s.sparsity.result();
      return {
        target: s.target,
        sparsity,
        metrics: {
          ...s.reconstruction.result(),
          ...sparsity.metrics,
          ...s.downstream.result(),
          n_tokens: sparsity.tokens,
        },
      };
    });
  }
}
