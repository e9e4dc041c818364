/**
 * Data for feature dashboards: which features get one, and, over a second pass on the eval tokens, their
 * top-activating contexts and activation histograms. The logit effects come from logit-effects.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TokenBatch } from '../stages/text/types.js';
import { Mulberry32 } from '../util/random.js';
import { keepMask } from './evaluator.js';
import type { HookCapture } from './eval-engine.js';
import { FixedBinHistogram } from './histogram.js';
import type { Histogram } from './histogram.js';
import { tokenString } from './logit-effects.js';
import { hookWidth } from './sae-targets.js';
import type { EvalTarget } from './sae-targets.js';
import { UserError } from '../pipeline/errors.js';

export interface TopContext {
  tokens: string[];
  activations: number[];
  /** Index (within `tokens`) of the position where the feature fires most in this window. */
  max_index: number;
}

export interface FeatureContexts {
  feature: number;
  top_contexts: TopContext[];
  /** Histogram of the feature's non-zero activations on the eval tokens. */
  histogram: Histogram;
}

export interface DashboardLayout {
  /** Windows shown per feature. */
  topContexts: number;
  /** Tokens shown before and after the maximum. */
  before: number;
  after: number;
  /** Histogram bins over (0, max activation]. */
  bins: number;
}

export const DEFAULT_DASHBOARD_LAYOUT: DashboardLayout = { topContexts: 8, before: 12, after: 4, bins: 32 };

/**
 * The features that get a dashboard, spread over the density range rather than the densest: the range of
 * log10 density of the alive features is cut into n equal bins, and each bin in turn, densest first, gives a
 * feature drawn with the seed, until n are chosen (bins with no feature left are skipped). Returned densest
 * first; all alive features when there are no more than n.
 */
export function selectDashboardFeatures(density: ArrayLike<number>, n: number, seed: number): number[] {
  const alive: number[] = [];
  for (let j = 0; j < density.length; j++) if (density[j]! > 0) alive.push(j);
  if (n <= 0 || alive.length === 0) return [];
  const byDensity = (a: number, b: number) => density[b]! - density[a]! || a - b;
  if (alive.length <= n) return alive.sort(byDensity);
  const logs = alive.map((j) => Math.log10(density[j]!));
  const lo = Math.min(...logs);
  const hi = Math.max(...logs);
  const bins: number[][] = Array.from({ length: n }, () => []);
  alive.forEach((j, i) => {
    const b = hi > lo ? Math.min(n - 1, Math.floor(((hi - logs[i]!) / (hi - lo)) * n)) : 0;
    bins[b]!.push(j);
  });
  const rng = new Mulberry32(seed);
  const chosen: number[] = [];
  while (chosen.length < n) {
    for (const bin of bins) {
      if (bin.length === 0 || chosen.length === n) continue;
      const k = Math.floor(rng.next() * bin.length);
      chosen.push(bin[k]!);
      bin.splice(k, 1);
    }
  }
  return chosen.sort(byDensity);
}

/** Feature ids asked for by name (`--features 3,17`), checked against each SAE's width. */
export function requestedDashboardFeatures(features: readonly number[], dSae: number, sae: string): number[] {
  for (const f of features) {
    if (!Number.isInteger(f) || f < 0 || f >= dSae) {
      throw new UserError(`--features ${f}: SAE ${sae} has features 0..${dSae - 1}`);
    }
  }
  return [...new Set(features)];
}

interface Candidate {
  value: number;
  ids: Int32Array;
  activations: Float32Array;
  maxIndex: number;
}

/** Top contexts and histogram of one feature, fed a window at a time. */
class FeatureCollector {
  private readonly top: Candidate[] = [];
  private readonly histogram: FixedBinHistogram | null;

  constructor(
    readonly feature: number,
    maxActivation: number,
    private readonly layout: DashboardLayout,
  ) {
    this.histogram = maxActivation > 0 ? new FixedBinHistogram(0, maxActivation, layout.bins) : null;
  }

  /**
   * `acts[p * stride + offset]` is the activation at position p of a window of `ids`. A window enters the
   * top list only if its maximum beats the current last one, so ties keep the earlier window.
   */
  addWindow(
    ids: Int32Array,
    acts: Float32Array,
    stride: number,
    offset: number,
    keep: Uint8Array | undefined,
  ): void {
    const seq = ids.length;
    let best = -1;
    let bestValue = 0;
    for (let p = 0; p < seq; p++) {
      if (keep && keep[p] === 0) continue;
      const v = acts[p * stride + offset]!;
      if (v > 0) {
        this.histogram?.add(v);
        if (v > bestValue) {
          bestValue = v;
          best = p;
        }
      }
    }
    if (best < 0) return;
    const k = this.layout.topContexts;
    if (this.top.length >= k && bestValue <= this.top[this.top.length - 1]!.value) return;
    const start = Math.max(0, best - this.layout.before);
    const end = Math.min(seq, best + this.layout.after + 1);
    const activations = new Float32Array(end - start);
    for (let p = start; p < end; p++) activations[p - start] = acts[p * stride + offset]!;
    const candidate: Candidate = {
      value: bestValue,
      ids: ids.slice(start, end),
      activations,
      maxIndex: best - start,
    };
    const at = this.top.findIndex((c) => bestValue > c.value);
    if (at < 0) this.top.push(candidate);
    else this.top.splice(at, 0, candidate);
    if (this.top.length > k) this.top.pop();
  }

  result(decodeToken: (id: number) => string): FeatureContexts {
    return {
      feature: this.feature,
      top_contexts: this.top.map((c) => ({
        tokens: Array.from(c.ids, (id) => decodeToken(id)),
        activations: Array.from(c.activations),
        max_index: c.maxIndex,
      })),
      histogram: this.histogram?.result() ?? { edges: [], counts: [] },
    };
  }
}

/** The second pass: for each SAE, the selected features' contexts over the same eval tokens. */
export class DashboardCollector {
  private readonly perTarget: Array<{
    target: EvalTarget;
    features: number[];
    collectors: FeatureCollector[];
  }>;
  private readonly excluded: ReadonlySet<number>;
  private readonly hooks: string[];
  private readonly decodeToken: (id: number) => string;

  constructor(
    readonly model: HookCapture,
    selections: ReadonlyArray<{ target: EvalTarget; features: number[]; maxActivation: ArrayLike<number> }>,
    options: {
      excludeTokenIds?: readonly number[];
      layout?: DashboardLayout;
      /** The model's tokenizer's text of one token (default GPT-2's). */
      decodeToken?: (id: number) => string;
    } = {},
  ) {
    const layout = options.layout ?? DEFAULT_DASHBOARD_LAYOUT;
    this.decodeToken = options.decodeToken ?? tokenString;
    this.excluded = new Set(options.excludeTokenIds ?? []);
    this.perTarget = selections
      .filter((s) => s.features.length > 0)
      .map((s) => ({
        target: s.target,
        features: s.features,
        collectors: s.features.map((f) => new FeatureCollector(f, s.maxActivation[f]!, layout)),
      }));
    this.hooks = [...new Set(this.perTarget.map((s) => s.target.hookIn.name))];
  }

  get empty(): boolean {
    return this.perTarget.length === 0;
  }

  async addBatch(batch: TokenBatch): Promise<void> {
    if (this.empty) return;
    const { batchSize, contextSize } = batch;
    const rows = batchSize * contextSize;
    const run = await this.model.runWithHooks(
      { data: batch.tokens, shape: [batchSize, contextSize] },
      { hooks: this.hooks },
    );
    const keep = keepMask(batch.tokens, this.excluded);
    for (const { target, features, collectors } of this.perTarget) {
      const width = hookWidth(this.model.config, target.hookIn);
      const data = run.activations.get(target.hookIn.name)!.data;
      const acts = tf.tidy(() => {
        const f = target.sae.encode(tf.tensor2d(data, [rows, width]));
        return tf.gather(f, tf.tensor1d(features, 'int32'), 1);
      });
      const host = (await acts.data()) as Float32Array;
      acts.dispose();
      const n = features.length;
      for (let b = 0; b < batchSize; b++) {
        const ids = batch.tokens.subarray(b * contextSize, (b + 1) * contextSize);
        const windowActs = host.subarray(b * contextSize * n, (b + 1) * contextSize * n);
        const windowKeep = keep?.subarray(b * contextSize, (b + 1) * contextSize);
        collectors.forEach((c, k) => c.addWindow(ids, windowActs, n, k, windowKeep));
      }
    }
  }

  /** The collected contexts, by SAE name. */
  results(): Map<string, FeatureContexts[]> {
    return new Map(
      this.perTarget.map((s) => [s.target.name, s.collectors.map((c) => c.result(this.decodeToken))]),
    );
  }
}
