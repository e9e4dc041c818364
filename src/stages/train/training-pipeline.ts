import path from 'node:path';
import { existsSync } from 'node:fs';
import { WEIGHT_PROCESSINGS } from '../../model/index.js';
import type { RunContext } from '../../pipeline/define-pipeline.js';
import { UserError } from '../../pipeline/errors.js';
import { opt, type ConfigOf } from '../../pipeline/options.js';
import { SaeTrainer, TRAINER_MANIFEST, architectureNames, architectureOf } from '../../sae/index.js';
import { ENGINES, resolveEngine } from '../../engine/engines.js';
import type { ActivationEngine } from '../model/index.js';
import type { Tokenizer } from '../../tokenizer/index.js';
import { readStoreSnapshot, STORE_SNAPSHOT_FILE, type StoreSnapshot } from '../store/index.js';
import { modelShape, openActivationInput } from './activation-input.js';
import { sweepSaeName } from './sae-names.js';
import {
  applySaelensSaeOptions,
  checkSaelensSaeOptions,
  modelFromPretrainedKwargs,
  requestedDSae,
  saelensSaeOptions,
} from './saelens-names.js';
import { shortRunNotes } from './short-run-notes.js';
import { sweepShare, writeSweepPart } from '../../cluster/sweep-parts.js';

/** Options shared by the SAE and transcoder training pipelines; SAE options use SAELens's names. */
export const trainingOptions = {
  model: opt.string(
    'auto',
    'auto (gpt2 from the HF cache, else the embedded tiny-gpt2), tiny-gpt2, a directory, or a hub name',
  ),
  dataset: opt.string('moby-dick', 'text file, directory, glob, embedded corpus, or Hugging Face dataset id'),
  activations: opt.nullable(
    opt.string('', 'train from this activation cache or Parquet file instead of running the model'),
    null,
  ),
  layer: opt.nullable(
    opt.int(0, 'layer (default: 8 for 12-layer models, else the middle layer)', { min: 0 }),
    null,
  ),
  context_size: opt.int(128, 'tokens per context window', { min: 2 }),
  store_batch_size_prompts: opt.int(16, 'context windows per model forward', { min: 1 }),
  prepend_bos: opt.nullable(
    opt.boolean(
      true,
      "start every window with BOS (default: TransformerLens's default for the model family)",
    ),
    null,
  ),
  disable_concat_sequences: opt.boolean(false, 'never join documents inside one window'),
  processing: opt.choice(WEIGHT_PROCESSINGS, 'none', 'model weight processing'),
  engine: opt.choice(
    ENGINES,
    'auto',
    'compute engine for the model forward and the SAE steps: onnx (onnxruntime, several times faster on CPU), tfjs (TensorFlow.js), or auto (onnx where onnxruntime runs)',
  ),
  exclude_special_tokens: opt.boolean(
    true,
    "leave the tokenizer's special tokens (BOS/EOS/pad) out of training",
  ),
  n_batches_in_buffer: opt.int(16, 'activation store buffer, in training batches', { min: 2 }),
  architecture: opt.choice(architectureNames(), 'topk', 'SAE architecture'),
  d_sae: opt.nullable(
    opt.int(1, 'number of features (default: 16 x d_in for GPT-2, 8 x d_in otherwise)', { min: 1 }),
    null,
  ),
  k: opt.int(32, 'active features per token (topk, batchtopk)', { min: 1 }),
  l1_coefficient: opt.number(5, 'L1 coefficient (standard, gated)', { min: 0 }),
  l0_coefficient: opt.number(1, 'L0 coefficient (jumprelu)', { min: 0 }),
  matryoshka_widths: opt.numberList(
    [],
    'nested prefix widths, each reconstructing alone (matryoshka_batchtopk; d_sae is appended)',
    { min: 1 },
  ),
  lr: opt.number(3e-4, 'learning rate', { min: 0 }),
  lr_scheduler_name: opt.choice(
    ['constant', 'cosineannealing', 'cosineannealingwarmrestarts'],
    'constant',
    'LR schedule',
  ),
  lr_warm_up_steps: opt.int(0, 'LR warm-up steps', { min: 0 }),
  lr_decay_steps: opt.int(0, 'steps of linear LR decay to zero at the end', { min: 0 }),
  l1_warm_up_steps: opt.int(0, 'sparsity-coefficient warm-up steps', { min: 0 }),
  training_tokens: opt.nullable(
    opt.int(1, 'tokens to train on (default: 2M for GPT-2, 600k otherwise)', { min: 1 }),
    null,
  ),
  train_batch_size_tokens: opt.int(4096, 'tokens per training step', { min: 1 }),
  normalize_activations: opt.choice(
    ['none', 'expected_average_only_in'],
    'none',
    'activation normalisation (folded into the saved SAE)',
  ),
  n_batches_for_norm_estimate: opt.int(100, 'batches used to estimate the normalisation factor', { min: 1 }),
  dead_feature_window: opt.int(1000, 'steps without firing after which a feature counts as dead', { min: 1 }),
  feature_sampling_window: opt.int(2000, 'steps per feature-density report', { min: 1 }),
  apply_b_dec_to_input: opt.boolean(true, 'subtract b_dec from the input before encoding (SAEs only)'),
  decoder_init_norm: opt.number(0.1, 'initial norm of decoder rows', { min: 0 }),
  normalize_sae_decoder: opt.boolean(false, 'keep decoder rows at unit norm throughout training'),
  b_dec_init_method: opt.choice(['zeros', 'mean', 'geometric_median'], 'zeros', 'b_dec initialisation'),
  seed: opt.int(42, 'random seed (initialisation, shuffling)', { min: 0 }),
  checkpoint_every_tokens: opt.int(
    0,
    'write a resumable checkpoint every this many tokens (0: at the end only)',
    { min: 0 },
  ),
  checkpoint_every_minutes: opt.number(
    10,
    'also write a resumable checkpoint when this many minutes have passed since the last (0: never by time)',
    { min: 0 },
  ),
  saes: opt.json<Record<string, unknown>[]>(
    [],
    'sweep: a JSON list of option overrides, one SAE each, trained from one activation stream',
    (v) => {
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'object' || x === null || Array.isArray(x))) {
        throw new Error('a JSON list of objects');
      }
      return v as Record<string, unknown>[];
    },
    'JSON list',
  ),
  shard: opt.nullable(
    opt.string(
      '0/1',
      'task i of n of a split sweep (i/n): trains SAEs i, i+n, ... of --saes; pipelines/gather-sweep.ts evaluates them together (docs/cluster.md)',
    ),
    null,
  ),
  ...saelensSaeOptions,
};

export type TrainingConfig = ConfigOf<typeof trainingOptions>;

export interface TrainingKind {
  /** The hook(s) each SAE reads, given the layer. */
  hooks(layer: number): { hook_name: string; hook_name_out?: string };
  /** Extra per-SAE options (transcoder: skip_connection). */
  extra?: Record<string, unknown>;
}

/** What a training pipeline wires together: the trainer, the hooks it reads and where they come from. */
export interface PreparedTraining {
  trainer: SaeTrainer;
  /** Every hook some SAE reads, in first-use order. */
  hooks: string[];
  /** The model to run over the dataset, or null when the activations come from a cache. */
  model: ActivationEngine | null;
  checkpointDir: string;
  outputDir: string;
  /**
   * Training batches a resumed run replays and skips: only for a checkpoint without the activation store's
   * state (written before it was saved); otherwise 0 and `store` continues the stream.
   */
  resumeBatches: number;
  /** The activation store as checkpointed, when resuming from a checkpoint that has it. */
  store: StoreSnapshot | null;
  /** Rows in one pass over the cache (to seek in it), or null for a model. */
  rowsPerPass: number | null;
  /** Tokens the activation store leaves out (the special tokens). */
  excludeTokenIds: number[];
  /** The model's tokenizer, or null when the activations come from a cache. */
  tokenizer: Tokenizer | null;
  /** `prepend_bos` as resolved: the option, else the model family's default (or the cache's). */
  prependBos: boolean;
  /** Releases the model and the trainer. */
  dispose(): void;
}

/**
 * Builds the SAE configs (base options, then each `saes` override), loads the model or inspects the cache,
 * and creates or resumes the trainer.
 */
export async function prepareTraining(
  cfg: TrainingConfig & Record<string, unknown>,
  ctx: RunContext,
  kind: TrainingKind,
): Promise<PreparedTraining> {
  const share = sweepShare(cfg.shard, Math.max(cfg.saes.length, 1));
  const usingModel = cfg.activations === null;
  const shape = usingModel ? await modelShape(cfg.model) : null;
  const gpt2Like = shape !== null && shape.nLayer === 12 && shape.nEmbd === 768;
  const layer = cfg.layer ?? (shape ? (shape.nLayer === 12 ? 8 : Math.floor(shape.nLayer / 2)) : 0);
  if (shape && layer >= shape.nLayer)
    throw new UserError(`--layer ${layer}: the model has ${shape.nLayer} layers (0..${shape.nLayer - 1})`);
  const trainingTokens = cfg.training_tokens ?? (gpt2Like ? 2_000_000 : 600_000);
  if (shape && shape.name !== 'gpt2' && cfg.model === 'auto') {
    ctx.log.warn(
      `GPT-2 weights are not available offline: training on the embedded ${shape.name} with smaller defaults`,
    );
  }

  const base = (override: Record<string, unknown>, index: number) => {
    const hooks = kind.hooks(typeof override.layer === 'number' ? override.layer : layer);
    const { layer: _layer, ...rest } = override;
    const merged: Record<string, unknown> = {
      architecture: cfg.architecture,
      lr: cfg.lr,
      lr_scheduler_name: cfg.lr_scheduler_name,
      lr_warm_up_steps: cfg.lr_warm_up_steps,
      lr_decay_steps: cfg.lr_decay_steps,
      training_tokens: trainingTokens,
      train_batch_size_tokens: cfg.train_batch_size_tokens,
      normalize_activations: cfg.normalize_activations,
      n_batches_for_norm_estimate: cfg.n_batches_for_norm_estimate,
      dead_feature_window: cfg.dead_feature_window,
      feature_sampling_window: cfg.feature_sampling_window,
      decoder_init_norm: cfg.decoder_init_norm,
      normalize_sae_decoder: cfg.normalize_sae_decoder,
      b_dec_init_method: cfg.b_dec_init_method,
      seed: cfg.seed + index,
      ...hooks,
      ...kind.extra,
      ...rest,
    };
    // The architecture's own options, where the pipeline has them at top level (k, l1_coefficient, ...).
    const top = cfg as unknown as Record<string, unknown>;
    for (const name of Object.keys(architectureOf(String(merged.architecture)).options)) {
      if (top[name] !== undefined) merged[name] ??= top[name];
    }
    if (!merged.hook_name_out) merged.apply_b_dec_to_input ??= cfg.apply_b_dec_to_input;
    applySaelensSaeOptions(cfg, merged);
    return merged;
  };
  const drafts = (cfg.saes.length > 0 ? cfg.saes : [{}]).map((o, i) => base(o, i));
  checkSaelensSaeOptions(
    cfg,
    drafts.map((d) => d.architecture as string),
  );
  const hooks = [
    ...new Set(
      drafts.flatMap((d) => (d.hook_name_out ? [d.hook_name, d.hook_name_out] : [d.hook_name]) as string[]),
    ),
  ];

  const engine = await resolveEngine(cfg.engine, (m) => ctx.log.info(m));
  const input = await openActivationInput(
    {
      activations: cfg.activations,
      model: cfg.model,
      hooks,
      contextSize: cfg.context_size,
      processing: cfg.processing,
      engine,
      minTokensPerPass: cfg.train_batch_size_tokens,
    },
    ctx,
  );
  try {
    const prependBos = cfg.prepend_bos ?? input.prependBos;
    const sweep = drafts.map((d, i) => {
      const dIn = input.widths[d.hook_name as string] as number;
      const dOut = d.hook_name_out ? input.widths[d.hook_name_out as string] : undefined;
      const dSae = requestedDSae(d, cfg, dIn) ?? (gpt2Like ? 16 : 8) * dIn;
      const { expansion_factor: _factor, ...rest } = d;
      return {
        name: (d.name as string | undefined) ?? sweepSaeName(drafts, cfg.saes, i),
        d_in: dIn,
        ...(dOut !== undefined ? { d_out: dOut } : {}),
        ...rest,
        d_sae: dSae,
        metadata: {
          model_name: input.modelName,
          // Not SAELens's: the folder the model was loaded from, so that eval-sae evaluates on the same model.
          ...(input.modelDir === null ? {} : { saeflow_model_dir: input.modelDir }),
          hook_name: d.hook_name,
          context_size: cfg.context_size,
          prepend_bos: prependBos,
          dataset_path: cfg.activations ?? cfg.dataset,
          exclude_special_tokens: cfg.exclude_special_tokens,
          // SAELens's record of how the model was loaded: eval-sae and SAELens rebuild the same model from it.
          model_from_pretrained_kwargs: modelFromPretrainedKwargs(cfg.processing),
        },
      };
    });
    // Names and seeds come from the whole sweep, so a task trains its SAEs exactly as the unsplit run would.
    const configs = sweep.filter((_, i) => share === null || i % share.count === share.index);
    if (share !== null) {
      writeSweepPart(
        ctx.runDir,
        share,
        sweep.map((c) => c.name),
        configs.map((c) => c.name),
      );
      ctx.log.info(
        `task ${share.index} of ${share.count}: SAEs ${configs.map((c) => c.name).join(', ')} of the sweep`,
      );
    }

    const checkpointDir = path.join(ctx.runDir, 'checkpoint');
    const resuming = ctx.resume && existsSync(path.join(checkpointDir, TRAINER_MANIFEST));
    const trainer = resuming
      ? await SaeTrainer.resume(checkpointDir, { configs, engine })
      : SaeTrainer.create(configs, { engine });
    trainer.checkHookWidths(input.widths, cfg.activations ?? `the model's hooks`);
    for (const c of trainer.configs) {
      ctx.log.info(
        `SAE ${c.name}: ${c.architecture} ${c.hook_name}${c.d_out ? ` -> ${c.d_out}` : ''}, d_in ${c.d_in}, d_sae ${c.d_sae}, ${c.training_tokens} tokens`,
      );
    }
    const store = resuming ? await savedStore(checkpointDir, trainer.batches) : null;
    if (resuming) ctx.log.info(resumeNote(checkpointDir, trainer.batches, store, input.rowsPerPass));
    for (const note of shortRunNotes(trainer.configs)) ctx.log.info(note);
    ctx.progress.setTotal(Math.max(...trainer.configs.map((c) => c.training_tokens)));
    return {
      trainer,
      hooks,
      model: input.model,
      checkpointDir,
      outputDir: path.join(ctx.runDir, 'saes'),
      resumeBatches: store ? 0 : trainer.batches,
      store,
      rowsPerPass: input.rowsPerPass,
      excludeTokenIds: cfg.exclude_special_tokens ? [...input.specialTokenIds] : [],
      tokenizer: input.tokenizer,
      prependBos,
      dispose: () => {
        input.dispose();
        trainer.dispose();
      },
    };
  } catch (e) {
    input.dispose();
    throw e;
  }
}

/** The activation store saved with a checkpoint, checked to belong to the trainer's state beside it. */
async function savedStore(dir: string, batches: number): Promise<StoreSnapshot | null> {
  const file = path.join(dir, STORE_SNAPSHOT_FILE);
  if (!existsSync(file)) return null;
  const store = await readStoreSnapshot(file);
  if (store.nextIndex !== batches) {
    throw new UserError(
      `${file}: the activation store continues at batch ${store.nextIndex} but ${TRAINER_MANIFEST} says ${batches} batches were trained`,
    );
  }
  return store;
}

function resumeNote(dir: string, batches: number, store: StoreSnapshot | null, rowsPerPass: number | null) {
  const start = `resuming from ${dir} after ${batches} batches`;
  if (!store)
    return `${start} (its checkpoint has no activation store: replaying the activation stream to that point)`;
  const skipped =
    rowsPerPass === null
      ? `skipping the first ${store.inputBatches} batches of context windows without running the model`
      : `reading the cache from row ${store.inputRows % rowsPerPass} of ${rowsPerPass}`;
  return `${start} (the activation store is restored; ${skipped})`;
}
