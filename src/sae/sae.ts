/**
 * An SAE (or transcoder) for inference on TensorFlow.js tensors, with SAELens's inference semantics for
 * every architecture it saves or loads: the forward of src/sae/inference.ts (written once on the op
 * layer, the same the onnx evaluator builds into its graph) run eagerly. Inputs are 2-D [tokens, d_in]
 * float32 tensors; results are new tensors the caller owns.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TfjsOps } from '../ops/tfjs-ops.js';
import { UserError } from '../pipeline/errors.js';
import type { HostTensor } from './host-tensor.js';
import { saeDecode, saeEncode, saeForward } from './inference.js';
import type { InferenceSae } from './inference.js';
import { readSaeFolder } from './saelens-folder.js';
import type { SaeFolderConfig } from './saelens-folder.js';
import type { SavedArchitecture } from './saved-architecture.js';

/** Names this SAE's weights among the backend's constants. */
let nextId = 0;

export class Sae {
  private readonly o = new TfjsOps();
  private readonly saved: InferenceSae;
  private readonly key = `sae${nextId++}`;
  private disposed = false;

  private constructor(
    readonly config: SaeFolderConfig,
    readonly kind: SavedArchitecture,
    tensors: Record<string, HostTensor>,
    /** log10 feature density from sparsity.safetensors, if the folder had one. */
    readonly sparsity: Float32Array | null,
  ) {
    if (config.normalize_activations === 'expected_average_only_in') {
      throw new UserError(
        `SAE '${String(config.metadata.hook_name ?? config.architecture)}': normalize_activations is 'expected_average_only_in' but no scaling factor was folded into its weights; fold it first (saeflow saves folded SAEs)`,
      );
    }
    this.saved = { config, kind, tensors };
  }

  static async load(dir: string): Promise<Sae> {
    const folder = await readSaeFolder(dir);
    return new Sae(folder.config, folder.kind, folder.tensors, folder.sparsity);
  }

  static fromTensors(
    config: SaeFolderConfig,
    kind: SavedArchitecture,
    tensors: Record<string, HostTensor>,
    sparsity: Float32Array | null = null,
  ): Sae {
    return new Sae(config, kind, tensors, sparsity);
  }

  get dIn(): number {
    return this.config.d_in;
  }
  get dSae(): number {
    return this.config.d_sae;
  }
  get dOut(): number {
    return this.config.d_out ?? this.config.d_in;
  }

  private checkInput(x: tf.Tensor, width: number, what: string): void {
    if (this.disposed) throw new Error('this SAE was disposed');
    if (x.rank !== 2 || x.shape[1] !== width) {
      throw new UserError(`SAE ${what} expects [tokens, ${width}], got [${x.shape.join(', ')}]`);
    }
  }

  /** Feature activations [tokens, d_sae] of raw inputs. */
  encode(x: tf.Tensor2D): tf.Tensor2D {
    this.checkInput(x, this.dIn, 'input');
    return tf.tidy(() => saeEncode(this.o, this.saved, this.key, x) as tf.Tensor2D);
  }

  /**
   * Reconstruction from feature activations (in the units the features were computed in; per-token
   * normalisations are undone only by `forward`). Skip transcoders need the input `x` too.
   */
  decode(f: tf.Tensor2D, x?: tf.Tensor2D): tf.Tensor2D {
    this.checkInput(f, this.dSae, 'feature activations');
    return tf.tidy(() => saeDecode(this.o, this.saved, this.key, f, x) as tf.Tensor2D);
  }

  /** x̂ [tokens, d_out] for raw inputs x [tokens, d_in]. */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    this.checkInput(x, this.dIn, 'input');
    return tf.tidy(() => saeForward(this.o, this.saved, this.key, x).reconstruction as tf.Tensor2D);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.o.dispose();
  }
}
