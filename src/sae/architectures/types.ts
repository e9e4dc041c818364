/**
 * What one SAE architecture file defines, once, on the op layer (so the same definition is an ONNX graph
 * for onnxruntime and eager TensorFlow.js): its options and their SAELens defaults, its per-feature
 * parameters and their initial values, its training forward with the hand-written backward pass, its
 * inference encoder, and how it is saved.
 *
 * Shapes during training (the step's layout): x [B, d_in], target [B, d_out] (x itself for an SAE),
 * W_enc [d_in, d_sae], W_dec held transposed as [d_out, d_sae] (both weight gradients then transpose the
 * narrow [B, width] operand, which MLAS computes ~25% faster), b_dec [d_out], W_skip [d_in, d_out],
 * per-feature vectors [d_sae]. Losses are means over the batch of per-token sums, as in SAELens.
 * The sparse topk step (`TrainInputs.sparse`, sparse-topk.ts) holds both matrices as rows instead:
 * W_enc [d_sae, d_in], W_dec [d_sae, d_out], since it gathers and scatter-adds whole feature rows.
 */
import type { IntArg, Ops } from '../../ops/ops.js';
import type { SaeTrainingConfig } from '../config.js';
import type { HostTensor } from '../host-tensor.js';
import type { SaeFolderConfig } from '../saelens-folder.js';
import type { EncoderKind } from '../saved-architecture.js';

export type ParamName =
  'W_enc' | 'b_enc' | 'W_dec' | 'b_dec' | 'W_skip' | 'log_threshold' | 'b_gate' | 'r_mag' | 'b_mag';

/** Parameter values by name; which names exist depends on the architecture and options. */
export type ParamValues<T> = Partial<Record<ParamName, T>>;

/** The AuxK inputs of a step that has dead features (topk family). */
export interface AuxKInputs<T> {
  /** [d_sae] 0 for dead features, -1e30 for live ones (added to the ranked values). */
  deadBias: T;
  /** How many dead features each token selects: min(k_aux, n_dead). */
  kAux: IntArg<T>;
  /** aux_loss_coefficient · min(n_dead / k_aux, 1). */
  weight: T;
}

export interface TrainInputs<T> {
  /** [B, d_in], normalised. */
  x: T;
  /** [B, d_out], normalised; the same value as x for an SAE. */
  target: T;
  /** 1 / (rows of the whole batch): a row chunk's terms then add up to the batch's means. */
  invRows: T;
  /** This step's sparsity coefficient (l1 or l0 after warm-up); unused by the topk family. */
  coefficient: T;
  /** Present when the step has dead features and the architecture has an AuxK loss. */
  aux?: AuxKInputs<T>;
  /** batchtopk family: entries the batch keeps, min(k·B, B·d_sae). */
  keep?: IntArg<T>;
  /** batchtopk family on a batch in row chunks: the selection threshold over the whole batch. */
  batchThreshold?: T;
  /** The sparse step (architectures with `sparseStep`): W_enc and W_dec are held as rows. */
  sparse?: boolean;
}

export interface TrainOutputs<T> {
  /** Loss terms in reporting order; the total loss is their sum. */
  losses: [string, T][];
  /** Extra scalars read back with the losses; over row chunks the trainer keeps their minimum. */
  stats: [string, T][];
  /** [B, d_sae] 0/1: where the features fire (f > 0); the sparse step's is [B, k], over its selection. */
  firing: T;
  /** [d_sae] rows each feature fired on, where the step counts them itself (else Σ_b firing). */
  fired?: T;
  /** [B, d_out] x̂. */
  reconstruction: T;
  /** Gradients of the total loss for every parameter in the step's layout. */
  grads: ParamValues<T>;
}

/** An option the architecture owns: its SAELens name, type and default. */
export interface ArchitectureOption {
  kind:
    | { type: 'int'; min?: number }
    | { type: 'number'; min?: number; max?: number; exclusiveMin?: number }
    | { type: 'bool' }
    | { type: 'intList' };
  default: unknown;
}

export interface Architecture {
  /** The name `--architecture` takes (SAELens's). */
  readonly name: string;
  /** Options only this architecture (and those built on it) reads, under SAELens's names. */
  readonly options: Readonly<Record<string, ArchitectureOption>>;
  /** Which sparsity coefficient the step's `coefficient` carries (SAELens's name) and how it warms up. */
  readonly coefficient?: {
    name: 'l1' | 'l0';
    value: 'l1_coefficient' | 'l0_coefficient';
    warmUpSteps: 'l1_warm_up_steps' | 'l0_warm_up_steps';
  };
  /** Whether the step has an AuxK loss fed with dead features. */
  readonly auxK?: boolean;
  /** Whether the step ranks the whole batch (keep count, threshold statistic). */
  readonly batchSelection?: boolean;
  /** Whether `train` has the sparse step (TrainInputs.sparse) for this configuration. */
  sparseStep?(cfg: SaeTrainingConfig): boolean;
  /** Per-feature parameters beyond W_enc, W_dec, b_dec (and W_skip), with their initial value. */
  featureParams(cfg: SaeTrainingConfig): Partial<Record<ParamName, number>>;
  /** Checks options that depend on each other; returns a message naming the field, or null. */
  validate?(cfg: SaeTrainingConfig): { field: string; message: string } | null;
  /** Training forward and analytic backward. */
  train<T>(o: Ops<T>, p: ParamValues<T>, input: TrainInputs<T>, cfg: SaeTrainingConfig): TrainOutputs<T>;
  /**
   * batchtopk family over row chunks: the threshold `TrainInputs.batchThreshold` carries, from every
   * chunk's x (a chunk alone cannot know the batch's k·B-th largest value).
   */
  batchThreshold?<T>(
    o: Ops<T>,
    p: ParamValues<T>,
    chunks: readonly { x: T; rows: number }[],
    keep: number,
    cfg: SaeTrainingConfig,
  ): T;
  /** Whether selection ranks h ⊙ ‖W_dec‖ (the saved SAE then has unit-norm decoder rows). */
  rescalesByDecoderNorm?(cfg: SaeTrainingConfig): boolean;
  /** The encoder the saved SAE runs (batchtopk saves as jumprelu). */
  readonly savedEncoder: EncoderKind;
  /** Its own definition of that encoder, where it is the architecture the encoder is saved as. */
  readonly encoder?: InferenceEncoder;
  /**
   * The saved per-feature tensors (beyond W_enc, W_dec, b_dec, W_skip) from host copies of the training
   * parameters, before decoder norms are folded into the encoder.
   */
  savedTensors(get: (name: ParamName) => HostTensor, ctx: SaveContext): Record<string, HostTensor>;
  /** Adjusts the saved tensors once the decoder norms are folded (batchtopk's rescaled threshold). */
  afterFold?(tensors: Record<string, HostTensor>, ctx: SaveContext): void;
}

export interface SaveContext {
  cfg: SaeTrainingConfig;
  /** batchtopk family: the running threshold, in normalised (and, rescaled, unit-decoder) units. */
  topkThreshold: number;
  /** The target's normalisation factor. */
  scaleOut: number;
}

/** Inference encoder of a saved architecture: features from the centred input x_c. */
export interface InferenceEncoder {
  readonly kind: EncoderKind;
  /** Per-feature tensors it reads beyond W_enc, W_dec, b_dec. */
  readonly tensors: readonly string[];
  encode<T>(o: Ops<T>, w: (name: string) => T, xc: T, cfg: SaeFolderConfig): T;
}

export function param<T>(p: ParamValues<T>, name: ParamName): T {
  const t = p[name];
  if (t === undefined) throw new Error(`parameter ${name} is missing`);
  return t;
}
