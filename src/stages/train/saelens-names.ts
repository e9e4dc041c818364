/**
 * SAELens's `LanguageModelSAERunnerConfig` (6.x, with the pre-6.0 names people still have in scripts) as the
 * training pipelines read it: the per-SAE fields as top-level options under their SAELens names, and every other
 * runner field mapped onto saeflow's option, accepted with a note, or refused with saeflow's equivalent.
 */
import { UserError } from '../../pipeline/errors.js';
import type { ForeignName, ForeignNames } from '../../pipeline/foreign-names.js';
import { opt, type ConfigOf } from '../../pipeline/options.js';
import { fieldAppliesTo, type SaeArchitecture, type SaeTrainingConfig } from '../../sae/config.js';

/**
 * Per-SAE fields settable for every SAE of a run at once. null leaves SAELens's default (or the `--saes` entry's
 * own value); a value applies to each SAE whose architecture has the field.
 */
export const saelensSaeOptions = {
  expansion_factor: opt.nullable(
    opt.number(1, 'd_sae = expansion_factor x d_in (SAELens; instead of --d_sae)', { min: 0 }),
    null,
  ),
  aux_loss_coefficient: opt.nullable(
    opt.number(1, 'AuxK loss coefficient (topk, batchtopk)', { min: 0 }),
    null,
  ),
  rescale_acts_by_decoder_norm: opt.nullable(
    opt.boolean(true, 'scale latents by decoder row norms before the top k (topk, batchtopk)'),
    null,
  ),
  topk_threshold_lr: opt.nullable(
    opt.number(0.01, 'learning rate of the inference threshold (batchtopk)', { min: 0, max: 1 }),
    null,
  ),
  jumprelu_bandwidth: opt.nullable(
    opt.number(0.05, 'straight-through bandwidth (jumprelu)', { min: 0 }),
    null,
  ),
  jumprelu_init_threshold: opt.nullable(opt.number(0.01, 'initial threshold (jumprelu)', { min: 0 }), null),
  l0_warm_up_steps: opt.nullable(opt.int(0, 'L0-coefficient warm-up steps (jumprelu)', { min: 0 }), null),
  adam_beta1: opt.nullable(opt.number(0.9, 'Adam beta1', { min: 0, max: 0.999999 }), null),
  adam_beta2: opt.nullable(opt.number(0.999, 'Adam beta2', { min: 0, max: 0.999999 }), null),
  max_grad_norm: opt.nullable(
    opt.number(1, 'global gradient-norm clip, 0 disables (SAELens fixes it at 1)', { min: 0 }),
    null,
  ),
  lr_end: opt.nullable(
    opt.number(0, 'end of the cosine schedules (SAELens default lr / 10)', { min: 0 }),
    null,
  ),
  n_restart_cycles: opt.nullable(opt.int(1, 'cycles of cosineannealingwarmrestarts', { min: 1 }), null),
};

type SaeFieldOptions = ConfigOf<typeof saelensSaeOptions>;
type PassedField = Exclude<keyof SaeFieldOptions, 'expansion_factor'>;

const PASSED = Object.keys(saelensSaeOptions).filter((k) => k !== 'expansion_factor') as PassedField[];

/** Sets the run-wide per-SAE fields on one SAE's draft, where its architecture has them and it has no own value. */
export function applySaelensSaeOptions(cfg: SaeFieldOptions, draft: Record<string, unknown>): void {
  const arch = draft.architecture as SaeArchitecture;
  for (const field of PASSED) {
    const value = cfg[field];
    if (value === null || draft[field] !== undefined) continue;
    if (fieldAppliesTo(field as keyof SaeTrainingConfig, arch)) draft[field] = value;
  }
}

/** A run-wide field no SAE of the run has (`--jumprelu_bandwidth` for topk SAEs) is a mistake, not a no-op. */
export function checkSaelensSaeOptions(
  cfg: SaeFieldOptions,
  architectures: readonly SaeArchitecture[],
): void {
  for (const field of PASSED) {
    if (cfg[field] === null) continue;
    if (!architectures.some((a) => fieldAppliesTo(field as keyof SaeTrainingConfig, a))) {
      throw new UserError(
        `--${field} does not apply to ${[...new Set(architectures)].join(', ')} SAEs (no SAE of this run has it)`,
      );
    }
  }
}

/** d_sae from an SAE's own d_sae, the run's --d_sae, or --expansion_factor x d_in; null when none is given. */
export function requestedDSae(
  draft: Record<string, unknown>,
  cfg: SaeFieldOptions & { d_sae: number | null },
  dIn: number,
): number | null {
  const ownFactor = draft.expansion_factor;
  if (ownFactor !== undefined && draft.d_sae !== undefined) {
    throw new UserError(`saes: give d_sae or expansion_factor for one SAE, not both`);
  }
  if (draft.d_sae !== undefined) return draft.d_sae as number;
  const factor = ownFactor ?? cfg.expansion_factor;
  if (factor !== null && cfg.d_sae !== null && ownFactor === undefined) {
    throw new UserError(
      `--d_sae ${cfg.d_sae} and --expansion_factor ${String(factor)} disagree; give one of them`,
    );
  }
  if (factor === null || factor === undefined) return cfg.d_sae;
  if (typeof factor !== 'number' || !(factor > 0)) {
    throw new UserError(`expansion_factor must be a number > 0, got ${JSON.stringify(factor)}`);
  }
  const dSae = Math.round(factor * dIn);
  if (Math.abs(dSae - factor * dIn) > 1e-9) {
    throw new UserError(
      `expansion_factor ${factor} x d_in ${dIn} = ${factor * dIn} is not a whole number of features`,
    );
  }
  return dSae;
}

const isNullish = (v: unknown) => v === null || v === undefined;
const isFalse = (v: unknown) => v === false || v === null;
const isEmpty = (v: unknown) =>
  v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
const TOOL = 'SAELens';
const to = (name: string, convert?: (v: unknown) => unknown): ForeignName => ({
  to: name,
  convert,
  tool: TOOL,
});
const ignored = (why: string): ForeignName => ({ ignored: why, tool: TOOL });
const unsupported = (why: string, harmless?: (v: unknown) => boolean): ForeignName => ({
  unsupported: why,
  harmless,
  tool: TOOL,
});

/** TransformerLens's model names where they differ from the Hugging Face names saeflow loads. */
const TRANSFORMER_LENS_MODELS: Record<string, string> = { 'gpt2-small': 'gpt2' };

/** SAELens's `model_from_pretrained_kwargs` as saeflow's `--processing`. */
export function processingFromKwargs(value: unknown): string {
  if (isEmpty(value)) return 'none';
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new UserError(`model_from_pretrained_kwargs must be an object, got ${JSON.stringify(value)}`);
  }
  const kwargs = value as Record<string, unknown>;
  const other = Object.entries(kwargs).filter(([k, v]) => k !== 'center_writing_weights' && v !== false);
  if (other.length > 0) {
    throw new UserError(
      `model_from_pretrained_kwargs: ${other.map(([k]) => k).join(', ')} not supported; saeflow's --processing offers none and center_writing_weights`,
    );
  }
  return kwargs.center_writing_weights === true ? 'center_writing_weights' : 'none';
}

/** saeflow's `--processing` as SAELens's `model_from_pretrained_kwargs` (what cfg.json records). */
export function modelFromPretrainedKwargs(processing: string): Record<string, unknown> {
  return processing === 'center_writing_weights' ? { center_writing_weights: true } : {};
}

const NO_WANDB = 'saeflow does not log to Weights & Biases; per-step metrics go to <run>/metrics.jsonl';
const OUTPUTS = 'outputs go to --out DIR (<run>/saes/<name>/, <run>/checkpoint/)';
const EVAL = 'evaluation is pipelines/eval-sae.ts (--n_eval_tokens)';

/** The runner config's names (and the per-SAE `sae` group's) for the SAE training pipeline. */
export const SAELENS_RUNNER_NAMES: ForeignNames = {
  sae: { group: true, tool: TOOL },
  logger: { group: true, tool: TOOL },
  metadata: { group: true, tool: TOOL },
  model_name: to('model', (v) => (typeof v === 'string' ? (TRANSFORMER_LENS_MODELS[v] ?? v) : v)),
  dataset_path: to('dataset'),
  hook_layer: to('layer'),
  hook_point: to('hook_name'),
  hook_point_layer: to('layer'),
  model_from_pretrained_kwargs: to('processing', processingFromKwargs),
  d_in: ignored("d_in is the hook's width, read from the model or the activation cache"),
  model_class_name: unsupported(
    'saeflow runs GPT-2-architecture models as TransformerLens HookedTransformer does',
    (v) => v === 'HookedTransformer',
  ),
  hook_eval: ignored('SAELens does not use it either'),
  hook_head_index: unsupported('train on the whole blocks.L.attn.hook_z (n_heads x d_head)', isNullish),
  dataset_trust_remote_code: ignored('saeflow never runs code from a dataset'),
  streaming: ignored('Hugging Face datasets are read from their Parquet files, shard by shard'),
  is_dataset_tokenized: ignored('token columns (tokens, input_ids) are recognised by name'),
  use_cached_activations: unsupported(
    "SAELens's activation cache is a Hugging Face datasets folder; saeflow trains from its own Parquet cache: --activations DIR (written by pipelines/cache-activations.ts)",
    isFalse,
  ),
  cached_activations_path: ignored(
    'only read with use_cached_activations, which saeflow replaces by --activations DIR',
  ),
  from_pretrained_path: unsupported(
    'saeflow does not fine-tune a pretrained SAE; --resume RUN_DIR continues a saeflow run',
    isNullish,
  ),
  seqpos_slice: unsupported(
    'every position of the window is trained on (BOS excluded with exclude_special_tokens)',
    (v) => v === null || (Array.isArray(v) && v.every((x) => x === null)),
  ),
  sequence_separator_token: unsupported('documents are joined with BOS', (v) => v === 'bos'),
  device: ignored('choose the compute with --engine onnx|tfjs and --backend'),
  act_store_device: ignored('activations stay in host memory'),
  dtype: unsupported('saeflow trains in float32', (v) => v === 'float32' || v === 'torch.float32'),
  autocast: ignored('no mixed precision: float32 throughout'),
  autocast_lm: ignored('no mixed precision: float32 throughout'),
  compile_llm: ignored('there is no torch.compile; --engine onnx builds one graph per computation'),
  llm_compilation_mode: ignored('there is no torch.compile'),
  compile_sae: ignored('there is no torch.compile; --engine onnx builds one graph per computation'),
  sae_compilation_mode: ignored('there is no torch.compile'),
  dead_feature_threshold: unsupported(
    'a feature counts as dead when it did not fire at all in the window',
    (v) => v === 1e-8,
  ),
  n_eval_batches: ignored(EVAL),
  eval_batch_size_prompts: ignored(EVAL),
  log_to_wandb: ignored(NO_WANDB),
  log_activations_store_to_wandb: ignored(NO_WANDB),
  log_optimizer_state_to_wandb: ignored(NO_WANDB),
  wandb_project: ignored(NO_WANDB),
  wandb_id: ignored(NO_WANDB),
  run_name: ignored('the run directory names the run: --out DIR'),
  wandb_entity: ignored(NO_WANDB),
  wandb_log_frequency: ignored(`${NO_WANDB} (every --log_every seconds for progress)`),
  eval_every_n_wandb_logs: ignored(NO_WANDB),
  n_checkpoints: unsupported('use --checkpoint_every_tokens N', (v) => v === 0),
  checkpoint_path: ignored(OUTPUTS),
  save_final_checkpoint: ignored(`${OUTPUTS}; the final state is always saved`),
  output_path: ignored(OUTPUTS),
  resume_from_checkpoint: unsupported('--resume RUN_DIR continues a saeflow run', isNullish),
  resume: unsupported('--resume RUN_DIR continues a saeflow run', isFalse),
  verbose: ignored('progress goes to the terminal and <run>/run.log (--progress)'),
  model_kwargs: unsupported('no model keyword arguments', isEmpty),
  sae_lens_version: ignored('a version stamp'),
  sae_lens_training_version: ignored('a version stamp'),
  neuronpedia_id: ignored('a Neuronpedia stamp'),
  // The `sae` group (6.x) and the flat pre-6.0 fields.
  reshape_activations: unsupported(
    'blocks.L.attn.hook_z is always flattened to n_heads x d_head',
    (v) => v === 'none',
  ),
  use_sparse_activations: ignored('a PyTorch memory optimisation'),
  lp_norm: unsupported('the sparsity penalty is the L1 norm', (v) => v === 1),
  jumprelu_sparsity_loss_mode: unsupported(
    'the JumpReLU sparsity loss is the step (L0) loss',
    (v) => v === 'step',
  ),
  jumprelu_tanh_scale: ignored('only used by the tanh sparsity loss, which saeflow does not have'),
  pre_act_loss_coefficient: unsupported('no pre-activation loss', isNullish),
  use_ghost_grads: unsupported(
    'dead features are revived by AuxK (topk, batchtopk), not ghost grads',
    isFalse,
  ),
  scale_sparsity_penalty_by_decoder_norm: ignored(
    'standard SAEs always weight the L1 penalty by decoder norms (SAELens 6 behaviour)',
  ),
  mse_loss_normalization: unsupported('the MSE is not normalised', isNullish),
  noise_scale: unsupported('no input noise', (v) => v === 0),
  decoder_orthogonal_init: unsupported('decoder rows start at decoder_init_norm', isFalse),
  decoder_heuristic_init: ignored('decoder rows always start at decoder_init_norm (Anthropic April 2024)'),
  decoder_heuristic_init_norm: to('decoder_init_norm'),
  init_encoder_as_decoder_transpose: ignored('the encoder starts as the decoder transposed, as in SAELens 6'),
  finetuning_method: unsupported('no fine-tuning', isNullish),
  finetuning_tokens: unsupported('no fine-tuning', (v) => v === 0),
  activation_fn: unsupported('choose --architecture (topk for activation_fn topk)', (v) => v === 'relu'),
  activation_fn_kwargs: unsupported('--k for a topk SAE', isEmpty),
};

/** The transcoder pipeline reads the same names; its two hooks follow from --layer. */
export const SAELENS_TRANSCODER_NAMES: ForeignNames = {
  ...SAELENS_RUNNER_NAMES,
  hook_name: unsupported(
    'a transcoder reads blocks.L.ln2.hook_normalized and predicts blocks.L.hook_mlp_out: give --layer L',
  ),
  hook_point: unsupported(
    'a transcoder reads blocks.L.ln2.hook_normalized and predicts blocks.L.hook_mlp_out: give --layer L',
  ),
};
