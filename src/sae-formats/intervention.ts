/**
 * An SAE as a hook replacement in a model (`runner.runWithHooks({ interventions })`, either engine): the
 * activation at the SAE's hook is replaced by its reconstruction; a transcoder reads its input hook and
 * replaces its output hook with its prediction. The replacement is data (src/model/replacement.ts), run by
 * the SAE inference forward on the op layer. The model must be loaded with the weight processing the SAE
 * was trained with (e.g. `center_writing_weights` for gpt2-small-res-jb), else the activations it sees are
 * not those it was trained on; that is checked here.
 */
import { hookShape, parseHookName } from '../model/hook-points.js';
import type { ModelConfig } from '../model/config.js';
import type { WeightProcessing } from '../model/process-weights.js';
import type { HookReplacement } from '../model/replacement.js';
import { UserError } from '../pipeline/errors.js';
import type { InferenceSae } from '../sae/inference.js';
import { requiredProcessingOf } from './types.js';

export interface SaeInterventionOptions {
  /** Hook the SAE reads (default: its `metadata.hook_name`). */
  hookName?: string;
  /** Transcoders: the hook it replaces (default: its `metadata.hook_name_out`). */
  hookNameOut?: string;
  /** Skip the weight-processing check (e.g. for hooks that processing does not change). */
  checkProcessing?: boolean;
}

/** What the check needs of a model: its config and the processing its weights were loaded with. */
export interface HookedModel {
  readonly config: ModelConfig;
  readonly processing: WeightProcessing;
}

/** Per-token width of a hook (hook_z's heads flattened, as SAELens's `reshape_activations: hook_z` does). */
function width(model: HookedModel, hook: string): number {
  const point = parseHookName(model.config, hook);
  return hookShape(model.config, point.site, 1, 1)
    .slice(2)
    .reduce((a, b) => a * b, 1);
}

/** The replacements that splice `sae` (as loaded: cfg.json, architecture, host weights) into the model. */
export function saeInterventions(
  sae: InferenceSae,
  model: HookedModel,
  options: SaeInterventionOptions = {},
): Record<string, HookReplacement> {
  const meta = sae.config.metadata;
  const label = String(meta.hook_name ?? sae.config.architecture);
  const hookIn = options.hookName ?? (typeof meta.hook_name === 'string' ? meta.hook_name : undefined);
  if (hookIn === undefined) {
    throw new UserError(
      `SAE (${sae.config.architecture}) records no hook_name; pass the hook to splice it in at`,
    );
  }
  const required = requiredProcessingOf(sae.config);
  if (options.checkProcessing !== false && required !== model.processing) {
    throw new UserError(
      `SAE ${label} was trained on a model loaded with weight processing '${required}', but the model was loaded with '${model.processing}'; load it with processing: '${required}'`,
    );
  }
  const dIn = width(model, hookIn);
  if (dIn !== sae.config.d_in) {
    throw new UserError(`SAE ${label}: d_in is ${sae.config.d_in} but hook ${hookIn} has width ${dIn}`);
  }
  const spec = { name: label, config: sae.config, kind: sae.kind, tensors: sae.tensors };
  if (!sae.kind.transcoder) return { [hookIn]: { kind: 'sae', sae: spec } };
  const hookOut =
    options.hookNameOut ?? (typeof meta.hook_name_out === 'string' ? meta.hook_name_out : undefined);
  if (hookOut === undefined) {
    throw new UserError(
      `transcoder ${label} records no hook_name_out; pass the hook whose output it replaces`,
    );
  }
  const inPoint = parseHookName(model.config, hookIn);
  const outPoint = parseHookName(model.config, hookOut);
  if (outPoint.order <= inPoint.order) {
    throw new UserError(
      `transcoder ${label}: output hook ${hookOut} does not come after input hook ${hookIn}`,
    );
  }
  const dOut = width(model, hookOut);
  const saeOut = sae.config.d_out ?? sae.config.d_in;
  if (dOut !== saeOut) {
    throw new UserError(`transcoder ${label}: d_out is ${saeOut} but hook ${hookOut} has width ${dOut}`);
  }
  return { [hookOut]: { kind: 'sae', sae: spec, input: hookIn } };
}
