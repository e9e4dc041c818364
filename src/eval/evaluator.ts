/**
 * Evaluates SAEs (and transcoders) on token batches through the model, streaming: per batch one clean
 * forward (capturing every hook the SAEs read or reconstruct, with logits and losses), one zero-ablation
 * forward per replaced hook, and one forward per SAE with its hook replaced by the SAE's output. The
 * forwards run on an EvalEngine (eval-engine.ts: TensorFlow.js or onnxruntime), which hands back per-token
 * numbers; the metrics are accumulated here in float64 and nothing grows with the number of batches.
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
 * to 0); here KL is Σ p (a - b) + lse(b) - lse(a) over logits, which has no such case (the onnx engine
 * evaluates it as Σ p (log p - log q) with log-softmaxes, the same sum rearranged). For the
 * reconstruction metrics see reconstruction-metrics.ts.
 * Transcoders read `hookIn` and reconstruct `hookOut`: in the patched forward their input is taken at
 * `hookIn` and their output replaces `hookOut` later in that same forward; the metrics compare it with the
 * clean `hookOut`, and zero ablation zeroes `hookOut`.
 */
import type { ModelRunner } from '../model/index.js';
import type { TokenBatch as ModelTokenBatch } from '../model/index.js';
import type { TokenBatch } from '../stages/text/types.js';
import { DownstreamAccumulator } from './downstream-metrics.js';
import type { DownstreamMetrics } from './downstream-metrics.js';
import type { EvalEngine } from './eval-engine.js';
import { ReconstructionAccumulator } from './reconstruction-metrics.js';
import type { ReconstructionMetrics } from './reconstruction-metrics.js';
import { hookWidth } from './sae-targets.js';
import type { EvalTarget } from './sae-targets.js';
import { SparsityAccumulator } from './sparsity-metrics.js';
import type { SparsityResult } from './sparsity-metrics.js';
import { ModelEvalEngine } from './model-eval-engine.js';

export interface EvaluatorOptions {
  /** Token ids left out of every metric (SAELens `ignore_tokens`); empty keeps every token. */
  excludeTokenIds?: readonly number[];
  /**
   * Compute the KL divergences (default true); without them the KL metrics are null. The tfjs engine needs
   * every forward's full logits on the host for them, which costs about as much as the forwards themselves
   * with a 50k vocabulary; the onnx engine computes them inside its graph.
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

export class SaeEvaluator {
  /** The engine the forwards run on (a model runner is wrapped as a ModelEvalEngine). */
  readonly engine: EvalEngine;
  private readonly states: TargetState[];
  private readonly excluded: ReadonlySet<number>;
  private readonly computeKl: boolean;
  private tokensSeen = 0;

  constructor(
    model: ModelRunner | EvalEngine,
    readonly targets: readonly EvalTarget[],
    options: EvaluatorOptions = {},
  ) {
    this.engine = 'forwards' in model ? model : new ModelEvalEngine(model);
    this.excluded = new Set(options.excludeTokenIds ?? []);
    this.computeKl = options.computeKl ?? true;
    this.states = targets.map((target) => ({
      target,
      reconstruction: new ReconstructionAccumulator(hookWidth(this.engine.config, target.hookOut)),
      sparsity: new SparsityAccumulator(target.config.d_sae),
      downstream: new DownstreamAccumulator(),
    }));
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
    const out = await this.engine.forwards(tokens, this.targets, { keep, computeKl: this.computeKl });
    this.states.forEach((state, i) => {
      const t = out.targets[i]!;
      state.reconstruction.add(t.original, t.reconstruction, rows, keep);
      state.sparsity.add(t.features, rows, keep);
      state.downstream.addCe(out.cleanLoss, t.loss, t.ablationLoss, keepLoss);
      if (t.kl && t.ablationKl) state.downstream.addKl(t.kl, t.ablationKl, keep);
    });
    this.tokensSeen += rows;
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
