/**
 * An SAE (or transcoder) for inference, with SAELens's inference semantics for every architecture it
 * saves or loads: standard (ReLU), topk, jumprelu (also what batchtopk is saved as) and gated, and their
 * transcoder forms. Inputs are 2-D [tokens, d_in] float32 tensors; results are new tensors the caller owns.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../pipeline/errors.js';
import type { HostTensor } from './fold.js';
import { readSaeFolder } from './saelens-folder.js';
import type { SaeFolderConfig } from './saelens-folder.js';
import type { SavedArchitecture } from './saved-architecture.js';

export class Sae {
  private readonly w: Record<string, tf.Tensor>;
  /** W_skip as [d_in, d_out] for a plain matMul (saved as SAELens's [d_out, d_in]). */
  private readonly skipT: tf.Tensor2D | null;
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
    this.w = {};
    for (const [name, t] of Object.entries(tensors)) {
      if (name !== 'W_skip') this.w[name] = tf.tensor(t.data, t.shape, 'float32');
    }
    this.skipT = tensors.W_skip
      ? tf.tidy(() =>
          tf.transpose(tf.tensor2d(tensors.W_skip!.data, tensors.W_skip!.shape as [number, number])),
        )
      : null;
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

  /** Feature activations [tokens, d_sae] of already-normalised inputs. */
  private encodeNormalised(x: tf.Tensor2D): tf.Tensor2D {
    const w = this.w;
    const xc = this.config.apply_b_dec_to_input ? tf.sub(x, w.b_dec!) : x;
    switch (this.kind.encoder) {
      case 'standard':
        return tf.relu(
          tf.fused.matMul({ a: xc as tf.Tensor2D, b: w.W_enc as tf.Tensor2D, bias: w.b_enc }),
        ) as tf.Tensor2D;
      case 'jumprelu': {
        const h = tf.fused.matMul({ a: xc as tf.Tensor2D, b: w.W_enc as tf.Tensor2D, bias: w.b_enc });
        return tf.mul(tf.relu(h), tf.cast(tf.greater(h, w.threshold!), 'float32')) as tf.Tensor2D;
      }
      case 'topk': {
        let h = tf.fused.matMul({
          a: xc as tf.Tensor2D,
          b: w.W_enc as tf.Tensor2D,
          bias: w.b_enc,
        }) as tf.Tensor2D;
        if (this.config.rescale_acts_by_decoder_norm) h = tf.mul(h, this.decoderNorms()) as tf.Tensor2D;
        const k = this.config.k!;
        const kth = tf.slice(tf.topk(h, k, true).values, [0, k - 1], [-1, 1]);
        return tf.mul(tf.relu(h), tf.cast(tf.greaterEqual(h, kth), 'float32')) as tf.Tensor2D;
      }
      case 'gated': {
        const P = tf.matMul(xc as tf.Tensor2D, w.W_enc as tf.Tensor2D);
        const gate = tf.step(tf.add(P, w.b_gate!));
        return tf.mul(gate, tf.relu(tf.add(tf.mul(P, tf.exp(w.r_mag!)), w.b_mag!))) as tf.Tensor2D;
      }
    }
  }

  private decoderNorms(): tf.Tensor1D {
    return tf.sqrt(tf.sum(tf.square(this.w.W_dec!), 1)) as tf.Tensor1D;
  }

  /** f W_dec + b_dec (+ x W_skip, x raw as in SAELens): the reconstruction in normalised units. */
  private decodeNormalised(f: tf.Tensor2D, x: tf.Tensor2D | undefined): tf.Tensor2D {
    const acts =
      this.kind.encoder === 'topk' && this.config.rescale_acts_by_decoder_norm
        ? tf.div(f, this.decoderNorms())
        : f;
    let out = tf.fused.matMul({
      a: acts as tf.Tensor2D,
      b: this.w.W_dec as tf.Tensor2D,
      bias: this.w.b_dec,
    }) as tf.Tensor2D;
    if (this.skipT !== null) {
      if (x === undefined) throw new Error('a skip transcoder needs the input x to decode');
      out = tf.add(out, tf.matMul(x, this.skipT)) as tf.Tensor2D;
    }
    return out;
  }

  /** Per-token input normalisation (SAELens's run-time `constant_norm_rescale` / `layer_norm`). */
  private normalise(x: tf.Tensor2D): { xn: tf.Tensor2D; undo: (y: tf.Tensor2D) => tf.Tensor2D } {
    switch (this.config.normalize_activations) {
      case 'constant_norm_rescale': {
        const coeff = tf.div(Math.sqrt(this.dIn), tf.norm(x, 'euclidean', 1, true));
        return { xn: tf.mul(x, coeff) as tf.Tensor2D, undo: (y) => tf.div(y, coeff) as tf.Tensor2D };
      }
      case 'layer_norm': {
        const mu = tf.mean(x, 1, true);
        const centred = tf.sub(x, mu);
        // torch.std is the unbiased estimate.
        const std = tf.sqrt(tf.div(tf.sum(tf.square(centred), 1, true), Math.max(1, this.dIn - 1)));
        return {
          xn: tf.div(centred, tf.add(std, 1e-5)) as tf.Tensor2D,
          undo: (y) => tf.add(tf.mul(y, std), mu) as tf.Tensor2D,
        };
      }
      default:
        return { xn: x, undo: (y) => y };
    }
  }

  /** Feature activations [tokens, d_sae] of raw inputs. */
  encode(x: tf.Tensor2D): tf.Tensor2D {
    this.checkInput(x, this.dIn, 'input');
    return tf.tidy(() => this.encodeNormalised(this.normalise(x).xn));
  }

  /**
   * Reconstruction from feature activations (in the units the features were computed in; per-token
   * normalisations are undone only by `forward`). Skip transcoders need the input `x` too.
   */
  decode(f: tf.Tensor2D, x?: tf.Tensor2D): tf.Tensor2D {
    this.checkInput(f, this.dSae, 'feature activations');
    return tf.tidy(() => this.decodeNormalised(f, x));
  }

  /** x̂ [tokens, d_out] for raw inputs x [tokens, d_in]. */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    this.checkInput(x, this.dIn, 'input');
    return tf.tidy(() => {
      const { xn, undo } = this.normalise(x);
      const out = this.decodeNormalised(this.encodeNormalised(xn), x);
      // SAELens transcoders do not undo the input normalisation on their (other-width) output.
      return this.kind.transcoder ? out : undo(out);
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of Object.values(this.w)) t.dispose();
    this.skipT?.dispose();
  }
}
