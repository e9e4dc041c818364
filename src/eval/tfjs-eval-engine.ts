/**
 * The evaluator's forwards on the TensorFlow.js GPT-2: interventions are JS functions around the SAE's
 * tfjs forward, and the KL divergences are computed on the host from every forward's full logits.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Gpt2Model, Intervention, TokenBatch } from '../model/index.js';
import { ReferenceDistribution } from './downstream-metrics.js';
import type { BatchForwards, EvalEngine, ForwardsOptions, TargetForwards } from './eval-engine.js';
import { hookWidth } from './sae-targets.js';
import type { EvalTarget } from './sae-targets.js';

/** Where `keep` is 1 the replacement, elsewhere the original (both [rows, width]). */
function keepReplaced(replacement: tf.Tensor, original: tf.Tensor, keep: Uint8Array | undefined): tf.Tensor {
  if (!keep) return replacement;
  const m = tf.tensor2d(Float32Array.from(keep), [keep.length, 1]);
  return tf.add(tf.mul(replacement, m), tf.mul(original, tf.sub(1, m)));
}

export class TfjsEvalEngine implements EvalEngine {
  readonly name = 'tfjs';

  constructor(readonly model: Gpt2Model) {}

  get config() {
    return this.model.config;
  }

  runWithHooks(tokens: TokenBatch, options: { hooks: readonly string[] }) {
    return this.model.runWithHooks(tokens, options);
  }

  async forwards(
    tokens: TokenBatch,
    targets: readonly EvalTarget[],
    { keep, computeKl }: ForwardsOptions,
  ): Promise<BatchForwards> {
    const [batch, seq] = tokens.shape;
    const rows = batch * seq;
    const hooks = [...new Set(targets.flatMap((t) => [t.hookIn.name, t.hookOut.name]))];
    const clean = await this.model.runWithHooks(tokens, { hooks, returnLogits: computeKl, returnLoss: true });
    const reference = computeKl
      ? new ReferenceDistribution(clean.logits!.data, rows, this.model.config.vocabSize)
      : null;
    // Zero ablation depends only on the replaced hook: shared by the SAEs that replace the same one.
    const ablations = new Map<string, { loss: Float32Array; kl: Float64Array | null }>();
    const out: TargetForwards[] = [];
    for (const target of targets) {
      const hookOut = target.hookOut.name;
      let ablation = ablations.get(hookOut);
      if (!ablation) {
        const run = await this.model.runWithHooks(tokens, {
          interventions: { [hookOut]: (a) => tf.zerosLike(a) },
          returnLogits: computeKl,
          returnLoss: true,
        });
        ablation = { loss: run.lossPerToken!.data, kl: reference?.klAgainst(run.logits!.data) ?? null };
        ablations.set(hookOut, ablation);
      }
      const patched = await this.runPatched(target, tokens, rows, keep, computeKl);
      out.push({
        original: clean.activations.get(hookOut)!.data,
        features: patched.features,
        reconstruction: patched.reconstruction,
        loss: patched.loss,
        ablationLoss: ablation.loss,
        kl: reference && patched.logits ? reference.klAgainst(patched.logits) : null,
        ablationKl: ablation.kl,
      });
    }
    return { cleanLoss: clean.lossPerToken!.data, targets: out };
  }

  /**
   * The forward with the SAE spliced in. Its feature activations and reconstruction are copied out of the
   * intervention itself, so the SAE runs once per batch.
   */
  private async runPatched(
    target: EvalTarget,
    tokens: TokenBatch,
    rows: number,
    keep: Uint8Array | undefined,
    withLogits: boolean,
  ): Promise<{
    features: Float32Array;
    reconstruction: Float32Array;
    loss: Float32Array;
    logits: Float32Array | undefined;
  }> {
    const widthIn = hookWidth(this.model.config, target.hookIn);
    const widthOut = hookWidth(this.model.config, target.hookOut);
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

  dispose(): void {
    this.model.dispose();
  }
}
