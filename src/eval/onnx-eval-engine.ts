/**
 * The evaluator's forwards on the onnxruntime GPT-2: one session run per batch holds the clean forward, the
 * zero ablations and every SAE's patched forward (each branching off the clean one at its hook), with the
 * SAEs, losses and KL divergences computed in the graph; only per-position numbers, the SAEs' features and
 * reconstructions and the clean activations they reconstruct come back to the host. An ONNX model holds
 * under 2 GiB of weights, so SAEs that do not fit beside the model together are split over several graphs
 * (each with its own clean forward).
 */
import { PROTOBUF_LIMIT } from '../engine/onnx/gpt2-onnx.js';
import type { Gpt2Onnx, OnnxSae, Replacements } from '../engine/onnx/gpt2-onnx.js';
import type { TokenBatch } from '../model/index.js';
import type { BatchForwards, EvalEngine, ForwardsOptions } from './eval-engine.js';
import type { EvalTarget } from './sae-targets.js';

export interface OnnxEvalEngineOptions {
  /** Most bytes of weights (model and SAEs) in one graph; default what protobuf allows, less 64 MiB. */
  graphWeightLimit?: number;
}

const saeBytes = (t: EvalTarget): number =>
  Object.values(t.tensors).reduce((n, w) => n + w.data.byteLength, 0);

export class OnnxEvalEngine implements EvalEngine {
  readonly name = 'onnx';
  /** One spec per target, so that the engine's session cache sees the same SAE every batch. */
  private readonly saes = new WeakMap<EvalTarget, OnnxSae>();
  private readonly graphWeightLimit: number;

  constructor(
    readonly model: Gpt2Onnx,
    options: OnnxEvalEngineOptions = {},
  ) {
    this.graphWeightLimit = options.graphWeightLimit ?? PROTOBUF_LIMIT - 2 ** 26;
  }

  get config() {
    return this.model.config;
  }

  runWithHooks(tokens: TokenBatch, options: { hooks: readonly string[] }) {
    return this.model.runWithHooks(tokens, options);
  }

  private saeOf(target: EvalTarget): OnnxSae {
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
    const budget = this.graphWeightLimit - this.model.weightBytes;
    const groups: EvalTarget[][] = [];
    let bytes = Infinity;
    for (const t of targets) {
      const b = saeBytes(t);
      if (bytes + b > budget) {
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
      // Every group's clean forward is the same graph, hence the same numbers.
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

  dispose(): Promise<void> {
    return this.model.dispose();
  }
}
