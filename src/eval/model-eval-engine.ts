/**
 * The evaluator's forwards on a model runner of either engine: per batch the clean forward, the zero
 * ablations and every SAE's patched forward, with the SAEs (src/sae/inference.ts), losses and KL divergences
 * computed by the op-layer definitions both engines share (src/model/replacement.ts, loss.ts). On onnx, one
 * session run holds them all (each patched forward branching off the clean one at its hook) and only
 * per-position numbers, the SAEs' features and reconstructions and the clean activations they reconstruct
 * come back to the host; on tfjs the forwards run one after the other and the logits are compared a chunk
 * of sequences at a time. An ONNX model holds under 2 GiB of weights, so on onnx SAEs that do not fit beside
 * the model together are split over several graphs (each with its own clean forward).
 */
import { PROTOBUF_LIMIT } from '../engine/onnx/onnx-proto.js';
import type { ModelRunner, ReplacementSae, Replacements, TokenBatch } from '../model/index.js';
import type { BatchForwards, EvalEngine, ForwardsOptions } from './eval-engine.js';
import type { EvalTarget } from './sae-targets.js';

export interface ModelEvalEngineOptions {
  /**
   * Most bytes of weights (model and SAEs) in one graph; default on onnx what protobuf allows, less 64 MiB,
   * and no limit on tfjs.
   */
  graphWeightLimit?: number;
}

const saeBytes = (t: EvalTarget): number =>
  Object.values(t.tensors).reduce((n, w) => n + w.data.byteLength, 0);

export class ModelEvalEngine implements EvalEngine {
  /** One spec per target, so that the runner's caches see the same SAE every batch. */
  private readonly saes = new WeakMap<EvalTarget, ReplacementSae>();
  private readonly graphWeightLimit: number;

  constructor(
    readonly model: ModelRunner,
    options: ModelEvalEngineOptions = {},
  ) {
    this.graphWeightLimit =
      options.graphWeightLimit ?? (model.engine === 'onnx' ? PROTOBUF_LIMIT - 2 ** 26 : Infinity);
  }

  get name() {
    return this.model.engine;
  }

  get config() {
    return this.model.config;
  }

  runWithHooks(tokens: TokenBatch, options: { hooks: readonly string[] }) {
    return this.model.runWithHooks(tokens, options);
  }

  private saeOf(target: EvalTarget): ReplacementSae {
    let sae = this.saes.get(target);
    if (!sae) {
      sae = { name: target.name, config: target.config, kind: target.kind, tensors: target.tensors };
      this.saes.set(target, sae);
    }
    return sae;
  }

  /**
   * Consecutive targets grouped so that each group's SAEs fit in one graph beside the model; an SAE too
   * large even alone gets a group of its own (and the engine's error about the size).
   */
  private groups(targets: readonly EvalTarget[]): EvalTarget[][] {
    const budget = this.graphWeightLimit - this.model.model.memoryWeightBytes;
    const groups: EvalTarget[][] = [];
    let bytes = 0;
    for (const t of targets) {
      const b = saeBytes(t);
      if (groups.length === 0 || bytes + b > budget) {
        groups.push([]);
        bytes = 0;
      }
      groups[groups.length - 1]!.push(t);
      bytes += b;
    }
    return groups;
  }

  async forwards(
    tokens: TokenBatch,
    targets: readonly EvalTarget[],
    options: ForwardsOptions,
  ): Promise<BatchForwards> {
    const out: BatchForwards = { cleanLoss: new Float32Array(0), targets: [] };
    for (const [i, group] of this.groups(targets).entries()) {
      const part = await this.groupForwards(tokens, group, options);
      // Every group's clean forward is the same computation, hence the same numbers.
      if (i === 0) out.cleanLoss = part.cleanLoss;
      out.targets.push(...part.targets);
    }
    return out;
  }

  private async groupForwards(
    tokens: TokenBatch,
    targets: readonly EvalTarget[],
    { keep, computeKl }: ForwardsOptions,
  ): Promise<BatchForwards> {
    // Variants: the zero ablation of each replaced hook (shared by the SAEs that replace it), then each SAE.
    const ablated = [...new Set(targets.map((t) => t.hookOut.name))];
    const variants: Replacements[] = [
      ...ablated.map((hook) => ({ [hook]: { kind: 'zero' as const } })),
      ...targets.map((t) => ({
        [t.hookOut.name]: { kind: 'sae' as const, sae: this.saeOf(t), input: t.hookIn.name },
      })),
    ];
    const run = await this.model.runVariants(tokens, { hooks: ablated, variants, kl: computeKl, keep });
    return {
      cleanLoss: run.clean.lossPerToken!.data,
      targets: targets.map((t, i) => {
        const ablation = run.variants[ablated.indexOf(t.hookOut.name)]!;
        const patched = run.variants[ablated.length + i]!;
        const sae = patched.saeOutputs.get(t.hookOut.name)!;
        return {
          original: run.clean.activations.get(t.hookOut.name)!.data,
          features: sae.features.data,
          reconstruction: sae.reconstruction.data,
          loss: patched.lossPerToken.data,
          ablationLoss: ablation.lossPerToken.data,
          kl: patched.kl?.data ?? null,
          ablationKl: ablation.kl?.data ?? null,
        };
      }),
    };
  }

  dispose(): void | Promise<void> {
    return this.model.dispose();
  }
}
