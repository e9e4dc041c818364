/**
 * The one interface an SAE training step runs behind, so that TrainingSae (schedules, statistics,
 * metrics, checkpoints) does not care where the arithmetic happens: `tfjs` (TensorFlow.js, the reference
 * with hand-written backward passes checked against finite differences) or `onnx` (the same step as one
 * onnxruntime graph, several times faster on CPU).
 *
 * A step is two-phase: `compute` runs forward and backward and returns the readback (losses, variance,
 * Σ grad², stats, firing counts) without changing the parameters; the caller checks it and then either
 * `commit`s the update (clipping, Adam, decoder re-normalisation) or `discard`s it, so a diverged step
 * leaves the parameters of the last good one.
 *
 * An engine whose `maxChunkSteps` exceeds 1 also runs several consecutive steps at once (`computeChunk`,
 * then `commitChunk` of the steps whose readbacks were good): the same arithmetic with fewer host round
 * trips. Dead features change from step to step inside a chunk, so it takes the firing statistics'
 * steps-since-fired instead of each request's mask.
 */
import type { HostTensor } from '../fold.js';
import type { ParamName } from '../architectures/types.js';

export const STEP_ENGINES = ['tfjs', 'onnx'] as const;
export type StepEngineName = (typeof STEP_ENGINES)[number];

export interface StepRequest {
  /** [rows, d_in] raw activations. */
  x: Float32Array;
  /** [rows, d_out] raw targets (transcoders), else null. */
  y: Float32Array | null;
  rows: number;
  /** Sparsity coefficient of this step (0 where the architecture has none). */
  coefficient: number;
  /** 1 for dead features, null when none are; only topk/batchtopk read it (AuxK). */
  deadMask: Float32Array | null;
  numDead: number;
  scaleIn: number;
  scaleOut: number;
  lr: number;
}

export interface ComputedStep {
  /** [losses..., total variance, Σ grad², stats..., firing count per feature]. */
  readback: Float32Array;
  lossNames: string[];
  statNames: string[];
}

export interface StepEngine {
  readonly name: StepEngineName;
  /** Most steps one `computeChunk` takes; 1 when the engine has no chunks. */
  readonly maxChunkSteps: number;
  readonly paramNames: ParamName[];
  /** Adam updates committed so far (PyTorch's optimizer `step`). */
  adamStep: number;
  compute(req: StepRequest): Promise<ComputedStep>;
  /** Applies the computed step's update; `gradNorm` is √(Σ grad²) from its readback. */
  commit(gradNorm: number): void;
  /** Drops the computed step. */
  discard(): void;
  /**
   * Consecutive steps from the current parameters (requests' deadMask and numDead are ignored: dead
   * features follow from `sinceFired`, the steps since each feature fired, null unless topk/batchtopk).
   * Nothing changes until `commitChunk`.
   */
  computeChunk?(reqs: readonly StepRequest[], sinceFired: Float64Array | null): Promise<ComputedStep[]>;
  /** Makes the first `steps` steps of the computed chunk current (0 drops them all). */
  commitChunk?(steps: number): Promise<void>;
  hostParams(): Record<string, HostTensor>;
  /** Adam's first (`m`) or second (`v`) moments, host copies. */
  hostMoments(which: 'm' | 'v'): Record<string, HostTensor>;
  setParam(name: ParamName, data: Float32Array): void;
  setMoment(which: 'm' | 'v', name: ParamName, data: Float32Array): void;
  dispose(): void;
}
