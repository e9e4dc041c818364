/**
 * What every format loader returns: the in-memory SAE of src/sae (`SaeFolder`: a SAELens-6 config, the
 * parsed architecture and float32 tensors in SAELens's names and layouts), plus where it came from and how
 * the model must be loaded for the SAE to see the activations it was trained on.
 */
import { tensorToFloat32 } from '../io/safetensors.js';
import type { Tensor } from '../io/safetensors.js';
import type { WeightProcessing } from '../model/process-weights.js';
import { UserError } from '../pipeline/errors.js';
import type { HostTensor } from '../sae/fold.js';
import type { SaeFolder, SaeFolderConfig } from '../sae/saelens-folder.js';
import { transposeMatrix } from '../util/transpose.js';

export const SAE_FORMATS = ['saelens', 'saelens-legacy', 'gemma-scope', 'sparsify'] as const;
export type SaeFormat = (typeof SAE_FORMATS)[number];

/** A pretrained SAE's place in a release (when it was resolved through one). */
export interface ReleaseRef {
  release: string;
  saeId: string;
  repoId: string;
  /** Folder (or file) inside the repository. */
  path: string;
  commit?: string;
}

export interface LoadedSae extends SaeFolder {
  format: SaeFormat;
  /** The folder or file the weights were read from. */
  source: string;
  /**
   * How the model must be loaded for its activations to match the SAE's training data (e.g.
   * `center_writing_weights` for gpt2-small-res-jb); from `metadata.model_from_pretrained_kwargs`.
   */
  requiredProcessing: WeightProcessing;
  release?: ReleaseRef;
  /** Conversions applied while loading, in words (for logs and `inspect-sae`). */
  notes: string[];
}

/**
 * The weight processing an SAE's metadata asks for. SAELens records TransformerLens loading options in
 * `metadata.model_from_pretrained_kwargs`; SAELens-trained SAEs default to unprocessed weights.
 */
export function requiredProcessingOf(config: Pick<SaeFolderConfig, 'metadata'>): WeightProcessing {
  const kwargs = config.metadata.model_from_pretrained_kwargs;
  if (
    typeof kwargs === 'object' &&
    kwargs !== null &&
    (kwargs as Record<string, unknown>).center_writing_weights === true
  ) {
    return 'center_writing_weights';
  }
  return 'none';
}

/** A stored tensor widened to a float32 host tensor after checking its shape. */
export function hostTensor(
  t: Tensor,
  expected: readonly number[],
  file: string,
  name: string,
  why = '',
): HostTensor {
  if (t.shape.length !== expected.length || t.shape.some((d, i) => d !== expected[i])) {
    throw new UserError(
      `${file}: tensor '${name}' has shape [${t.shape.join(', ')}], expected [${expected.join(', ')}]${why ? ` ${why}` : ''}`,
    );
  }
  const data = tensorToFloat32(t, name);
  // tensorToFloat32 returns an F32 tensor's own array: copy so loaders never share storage with a reader.
  return { shape: [...expected], data: data === t.data ? Float32Array.from(data) : data };
}

/** [rows, cols] -> [cols, rows]. */
export function transposed(t: HostTensor): HostTensor {
  const [rows, cols] = t.shape as [number, number];
  return { shape: [cols, rows], data: transposeMatrix(t.data, rows, cols) };
}

/** Refuses NaN/inf weights, naming the tensor and the first bad index. */
export function checkFinite(tensors: Record<string, HostTensor>, file: string): void {
  for (const [name, t] of Object.entries(tensors)) {
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i]!)) {
        throw new UserError(
          `${file}: tensor '${name}' holds a non-finite value (${t.data[i]}) at flat index ${i}`,
        );
      }
    }
  }
}
