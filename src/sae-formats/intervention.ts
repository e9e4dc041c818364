/**
 * An SAE as a hook replacement in GPT-2 (`Gpt2Model.runWithHooks({ interventions })`): the activation at
 * the SAE's hook is replaced by its reconstruction; a transcoder reads its input hook and replaces its
 * output hook with its prediction. The model must be loaded with the weight processing the SAE was trained
 * with (e.g. `center_writing_weights` for gpt2-small-res-jb), else the activations it sees are not those it
 * was trained on; that is checked here.
 */
import * as tf from '@tensorflow/tfjs-core';
import { hookShape, parseHookName } from '../model/hook-points.js';
import type { Gpt2Config } from '../model/gpt2-config.js';
import type { Intervention } from '../model/gpt2.js';
import type { WeightProcessing } from '../model/process-weights.js';
import { UserError } from '../pipeline/errors.js';
import type { Sae } from '../sae/sae.js';
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
  readonly config: Gpt2Config;
  readonly processing: WeightProcessing;
}

/** Per-token width of a hook (hook_z's heads flattened, as SAELens's `reshape_activations: hook_z` does). */
function width(model: HookedModel, hook: string): number {
  const point = parseHookName(model.config, hook);
  return hookShape(model.config, point.site, 1, 1)
    .slice(2)
    .reduce((a, b) => a * b, 1);
}

/** Flattens [batch, seq, ...] to [batch * seq, d], runs `fn`, and restores the leading dims. */
function perToken(
  act: tf.Tensor,
  d: number,
  fn: (x: tf.Tensor2D) => tf.Tensor2D,
  outShape: number[],
): tf.Tensor {
  const rows = act.shape[0]! * act.shape[1]!;
  return tf.reshape(fn(tf.reshape(act, [rows, d])), outShape);
}

/**
 * Interventions that splice `sae` into the model. The returned map goes to `runWithHooks`; the SAE stays
 * the caller's (dispose it after the runs).
 */
export function saeInterventions(
  sae: Sae,
  model: HookedModel,
  options: SaeInterventionOptions = {},
): Record<string, Intervention> {
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
  if (dIn !== sae.dIn) {
    throw new UserError(`SAE ${label}: d_in is ${sae.dIn} but hook ${hookIn} has width ${dIn}`);
  }
  if (!sae.kind.transcoder) {
    return {
      [hookIn]: (act) => perToken(act, dIn, (x) => sae.forward(x), act.shape),
    };
  }
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
  if (dOut !== sae.dOut) {
    throw new UserError(`transcoder ${label}: d_out is ${sae.dOut} but hook ${hookOut} has width ${dOut}`);
  }
  // The input is kept past its hook's tidy scope until the output hook uses (and frees) it.
  let input: tf.Tensor | undefined;
  return {
    [hookIn]: (act) => {
      input?.dispose();
      input = tf.keep(tf.clone(act));
      return act;
    },
    [hookOut]: (act) => {
      if (!input) throw new Error(`transcoder ${label}: ${hookOut} reached before ${hookIn}`);
      const x = input;
      input = undefined;
      try {
        return perToken(x, dIn, (rows) => sae.forward(rows), act.shape);
      } finally {
        x.dispose();
      }
    },
  };
}
