/**
 * The model configuration every engine and stage sees, whatever the family: sizes under TransformerLens's
 * names, the MLP activation, the family's hook points, and the few family-specific settings in `extra`.
 * Families map Hugging Face's `config.json` onto it (src/model/families/*.ts).
 */
import { UserError } from '../pipeline/errors.js';

export const ACTIVATION_FUNCTIONS = ['gelu_new', 'gelu', 'relu', 'silu'] as const;
/** The MLP nonlinearity; `gelu_new` is the tanh approximation (HF's gelu_new and gelu_pytorch_tanh). */
export type ActivationFunction = (typeof ACTIVATION_FUNCTIONS)[number];

/**
 * A size a hook's per-token shape is made of. Hooks of families with grouped-query attention have
 * `n_kv_heads` heads at k and v; numbers are literal sizes.
 */
export type HookDim = 'd_model' | 'd_mlp' | 'n_heads' | 'n_kv_heads' | 'd_head' | number;

/** One hook site: its name (inside a block, without the `blocks.L.` prefix) and its per-token shape. */
export interface HookSiteSpec {
  readonly site: string;
  readonly dims: readonly HookDim[];
}

/** A family's hook sites in execution order: before the blocks, in every block, after the blocks. */
export interface HookLayout {
  readonly embed: readonly HookSiteSpec[];
  readonly block: readonly HookSiteSpec[];
  readonly final: readonly HookSiteSpec[];
}

export interface ModelConfig {
  /** The family's registry name (`gpt2`), which knows the weights and the forward. */
  family: string;
  nLayers: number;
  dModel: number;
  nHeads: number;
  /** Key/value heads (grouped-query attention); n_heads where every head has its own. */
  nKvHeads: number;
  dHead: number;
  dMlp: number;
  vocabSize: number;
  /** The longest sequence the model takes (GPT-2's n_positions). */
  nCtx: number;
  /** Epsilon of the normalisation layers. */
  eps: number;
  act: ActivationFunction;
  hooks: HookLayout;
  /**
   * Settings only some families have (Gemma 2's soft-capping, a rotary base, parallel attention), by their
   * TransformerLens name; a family's forward reads the ones it defines.
   */
  extra: Readonly<Record<string, number | string | boolean | null>>;
}

/** A field of config.json that must be a positive integer. */
export function positiveInt(json: Record<string, unknown>, key: string, file: string): number {
  const v = json[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new UserError(`${file}: field "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A field of config.json that must be a positive number, with its default when absent. */
export function positiveNumber(
  json: Record<string, unknown>,
  key: string,
  file: string,
  dflt: number,
): number {
  const v = json[key] ?? dflt;
  if (typeof v !== 'number' || !(v > 0)) {
    throw new UserError(`${file}: field "${key}" must be a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}
