import { defer, EMPTY, of, repeat, type Observable } from 'rxjs';
import { hookShape, parseHookName, readModelConfig, type WeightProcessing } from '../../model/index.js';
import type { RunContext } from '../../pipeline/define-pipeline.js';
import { UserError } from '../../pipeline/errors.js';
import type { Flow } from '../../pipeline/flow.js';
import { inspectActivationSource } from '../cache/index.js';
import {
  loadActivationEngine,
  resolveModelSource,
  type ActivationEngine,
  type EngineName,
} from '../model/index.js';
import { GPT2_BOS_ID, loadTokenizer, type Tokenizer } from '../../tokenizer/index.js';
import { plural } from '../../util/plural.js';

export interface ActivationInputOptions {
  /** A cache directory or Parquet file/directory; when set, no model runs. */
  activations: string | null;
  model: string;
  hooks: readonly string[];
  contextSize: number;
  processing: WeightProcessing;
  engine: EngineName;
  /**
   * Tokens one pass over the data must yield at least (a training batch). Looping over less would
   * never fill a batch, or cycle a handful of tokens forever; it is a UserError instead.
   */
  minTokensPerPass?: number;
}

export interface ActivationInput {
  /** The loaded model, or null when the activations come from a cache. */
  model: ActivationEngine | null;
  /** Width of each requested hook. */
  widths: Record<string, number>;
  /** Model name for SAE metadata (from the cache manifest when reading a cache). */
  modelName: string;
  /** The model's folder when a model runs (recorded in SAE metadata so eval-sae finds the same model). */
  modelDir: string | null;
  /** The model's tokenizer, or null when the activations come from a cache. */
  tokenizer: Tokenizer | null;
  /** What `exclude_special_tokens` leaves out: the tokenizer's special ids, or those the cache recorded. */
  specialTokenIds: readonly number[];
  /** The prepend_bos default: the model family's, or what the cache was written with. */
  prependBos: boolean;
  /** Rows (tokens) in one pass over the cache; null for a model, whose passes are only known once run. */
  rowsPerPass: number | null;
  /** Releases the model's weights. */
  dispose(): void;
}

/**
 * Where a training run's activations come from: a model to run over a dataset, or a cache written by
 * cache-activations (or any Parquet file with one float-list column per hook). One option switches; the
 * pipeline file wires the stream.
 */
export async function openActivationInput(
  o: ActivationInputOptions,
  ctx: RunContext,
): Promise<ActivationInput> {
  if (o.activations) {
    const info = await inspectActivationSource(o.activations);
    const widths: Record<string, number> = {};
    for (const hook of o.hooks) {
      const spec = info.hooks.find((h) => h.name === hook);
      if (!spec) {
        throw new UserError(
          `hook ${hook} is not in ${o.activations}; it holds ${info.hooks.map((h) => h.name).join(', ') || 'no hooks'}`,
        );
      }
      widths[hook] = spec.d;
    }
    ctx.log.info(
      `activations: ${info.kind} ${o.activations} (${info.totalRows} tokens, ${plural(info.files.length, 'file')})`,
    );
    const need = o.minTokensPerPass ?? 0;
    if (info.totalRows < need) {
      throw new UserError(
        `${o.activations} holds ${info.totalRows} tokens; training needs at least ${need} (--train_batch_size_tokens)`,
      );
    }
    return {
      model: null,
      widths,
      modelName: info.manifest?.model ?? 'unknown',
      modelDir: null,
      tokenizer: null,
      // Caches from before other tokenizers existed, and plain Parquet files, are taken to be GPT-2's.
      specialTokenIds: info.manifest?.special_token_ids ?? [GPT2_BOS_ID],
      prependBos: info.manifest?.prepend_bos ?? true,
      rowsPerPass: info.totalRows,
      dispose: () => undefined,
    };
  }
  const resolved = await resolveModelSource(o.model);
  ctx.log.info(`model: ${resolved.description}`);
  const tokenizer = await loadTokenizer(resolved.dir);
  ctx.log.info(`tokenizer: ${tokenizer.description}`);
  const model = await loadActivationEngine(resolved.dir, { engine: o.engine, processing: o.processing });
  if (o.contextSize > model.config.nCtx) {
    void model.dispose();
    throw new UserError(
      `--context_size ${o.contextSize} exceeds the model's n_positions (${model.config.nCtx})`,
    );
  }
  const widths: Record<string, number> = {};
  for (const hook of o.hooks) {
    const point = parseHookName(model.config, hook);
    widths[hook] = hookShape(model.config, point.site, 1, 1).reduce((a, b) => a * b, 1);
  }
  return {
    model,
    widths,
    modelName: resolved.name,
    modelDir: resolved.dir,
    tokenizer,
    specialTokenIds: tokenizer.specialIds,
    prependBos: tokenizer.prependBos,
    rowsPerPass: null,
    dispose: () => void model.dispose(),
  };
}

/** The model's config without running anything, for defaults that depend on it (layer, width). */
export async function modelShape(spec: string): Promise<{ name: string; nLayer: number; nEmbd: number }> {
  const resolved = await resolveModelSource(spec);
  const config = await readModelConfig(resolved.dir);
  return { name: resolved.name, nLayer: config.nLayers, nEmbd: config.dModel };
}

/** Starts the stream over whenever it ends, until the run is asked to stop (SAELens cycles its data). */
export function cycleUntilStopped<T>(make: () => Observable<T>, flow: Flow): Observable<T> {
  return defer(make).pipe(repeat({ delay: () => (flow.stopped ? EMPTY : of(0)) }));
}
