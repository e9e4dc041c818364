import { concatWith, defer, EMPTY, of, repeat, tap, type Observable } from 'rxjs';
import type { ActivationBatch } from '../../arrow/activation-batch.js';
import { hookShape, parseHookName, readGpt2Config, type WeightProcessing } from '../../model/index.js';
import type { RunContext } from '../../pipeline/define-pipeline.js';
import { UserError } from '../../pipeline/errors.js';
import { cacheReader, inspectActivationSource } from '../cache/index.js';
import {
  loadActivationEngine,
  modelActivations,
  resolveModelSource,
  type EngineName,
} from '../model/index.js';
import { documentSource, pack, tokenize } from '../text/index.js';

export interface ActivationInputOptions {
  /** A cache directory or Parquet file/directory; when set, no model runs. */
  activations: string | null;
  model: string;
  dataset: string;
  hooks: readonly string[];
  contextSize: number;
  /** Context windows per model forward. */
  batchSize: number;
  prependBos: boolean;
  disableConcatSequences: boolean;
  processing: WeightProcessing;
  engine: EngineName;
  seed: number;
  /** Start over when the data runs out (SAELens cycles its dataset); the consumer decides when to stop. */
  loop: boolean;
  /**
   * Tokens one pass over the data must yield at least (a training batch). Looping over less would
   * never fill a batch, or cycle a handful of tokens forever; it is a UserError instead.
   */
  minTokensPerPass?: number;
}

export interface ActivationInput {
  source: Observable<ActivationBatch>;
  /** Width of each requested hook. */
  widths: Record<string, number>;
  /** Model name for SAE metadata (from the cache manifest when reading a cache). */
  modelName: string;
  /** Releases the model's weights. */
  dispose(): void;
}

/**
 * Where a training run's activations come from: a live model forward over a dataset, or a cache written
 * by cache-activations (or any Parquet file with one float-list column per hook). One option switches.
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
      `activations: ${info.kind} ${o.activations} (${info.totalRows} tokens, ${info.files.length} files)`,
    );
    const need = o.minTokensPerPass ?? 0;
    if (info.totalRows < need) {
      throw new UserError(
        `${o.activations} holds ${info.totalRows} tokens; training needs at least ${need} (--train_batch_size_tokens)`,
      );
    }
    const read = () => cacheReader({ path: o.activations as string, hooks: o.hooks, flow: ctx.flow });
    return {
      source: o.loop ? loopUntilStopped(read, ctx) : read(),
      widths,
      modelName: info.manifest?.model ?? 'unknown',
      dispose: () => undefined,
    };
  }
  const resolved = await resolveModelSource(o.model);
  ctx.log.info(`model: ${resolved.description}`);
  const model = await loadActivationEngine(resolved.dir, { engine: o.engine, processing: o.processing });
  if (o.contextSize > model.config.nPositions) {
    void model.dispose();
    throw new UserError(
      `--context_size ${o.contextSize} exceeds the model's n_positions (${model.config.nPositions})`,
    );
  }
  const widths: Record<string, number> = {};
  for (const hook of o.hooks) {
    const point = parseHookName(model.config, hook);
    widths[hook] = hookShape(model.config, point.site, 1, 1).reduce((a, b) => a * b, 1);
  }
  const need = o.minTokensPerPass ?? 0;
  const forward = () => {
    let tokenized = 0;
    let windows = 0;
    const tooSmall = () =>
      new UserError(
        `dataset ${o.dataset} has ${tokenized} tokens, which make ${windows} full context windows of ${o.contextSize} (${windows * o.contextSize} tokens); training needs at least ${need} per pass (--train_batch_size_tokens): use more data or a smaller --context_size or --train_batch_size_tokens`,
      );
    return documentSource(o.dataset, { shuffle: true, seed: o.seed }, ctx.flow).pipe(
      tokenize(),
      tap((doc) => (tokenized += doc.tokens.length)),
      pack({
        contextSize: o.contextSize,
        batchSize: o.batchSize,
        prependBos: o.prependBos,
        disableConcatSequences: o.disableConcatSequences,
      }),
      tap((batch) => (windows += batch.batchSize)),
      // Checked before the model runs: a dataset too small for one training batch fails at once.
      concatWith(
        defer(() => {
          if (windows * o.contextSize < need && !ctx.flow.stopped) throw tooSmall();
          return EMPTY;
        }),
      ),
      modelActivations({ model, hooks: o.hooks, flow: ctx.flow }),
    );
  };
  return {
    source: o.loop ? loopUntilStopped(forward, ctx) : forward(),
    widths,
    modelName: resolved.name,
    dispose: () => void model.dispose(),
  };
}

/** The model's config without running anything, for defaults that depend on it (layer, width). */
export async function modelShape(spec: string): Promise<{ name: string; nLayer: number; nEmbd: number }> {
  const resolved = await resolveModelSource(spec);
  const config = await readGpt2Config(resolved.dir);
  return { name: resolved.name, nLayer: config.nLayer, nEmbd: config.nEmbd };
}

/** Starts the stream over whenever it ends, until the run is asked to stop (Ctrl-C). */
function loopUntilStopped<T>(make: () => Observable<T>, ctx: RunContext): Observable<T> {
  return defer(make).pipe(repeat({ delay: () => (ctx.flow.stopped ? EMPTY : of(0)) }));
}
