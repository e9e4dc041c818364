/**
 * One typed training configuration per SAE, with SAELens's option names and defaults (SAELens 6.x:
 * `LanguageModelSAERunnerConfig` for the optimiser/schedule/dead-feature options, the architecture's
 * `*TrainingSAEConfig` for the rest). `resolveSaeTrainingConfig` fills defaults and names any bad field.
 */
import { UserError } from '../pipeline/errors.js';
import { ARCHITECTURES, architectureNames } from './architectures/registry.js';
import type { ArchitectureOption } from './architectures/types.js';

/** An architecture's name, as registered in src/sae/architectures/registry.ts. */
export type SaeArchitecture = string;

export const LR_SCHEDULERS = ['constant', 'cosineannealing', 'cosineannealingwarmrestarts'] as const;
export type LrSchedulerName = (typeof LR_SCHEDULERS)[number];

/** `constant_norm_rescale` and `layer_norm` are per-token and cannot be folded; training does not offer them. */
export const TRAINING_NORMALIZATIONS = ['none', 'expected_average_only_in'] as const;
export type TrainingNormalization = (typeof TRAINING_NORMALIZATIONS)[number];

export const B_DEC_INIT_METHODS = ['zeros', 'mean', 'geometric_median'] as const;
export type BDecInitMethod = (typeof B_DEC_INIT_METHODS)[number];

export interface SaeTrainingConfig {
  /** Unique within a trainer; names the checkpoint sub-folder and error messages. */
  name: string;
  architecture: SaeArchitecture;
  d_in: number;
  d_sae: number;
  /** Transcoders: width of the output side; null for an SAE (output = input). */
  d_out: number | null;
  /** Transcoders: add `x @ W_skip` to the output. */
  skip_connection: boolean;
  hook_name: string;
  /** Transcoders: the hook whose activations are the target; null for an SAE. */
  hook_name_out: string | null;
  apply_b_dec_to_input: boolean;
  normalize_activations: TrainingNormalization;
  /** Batches used to estimate the `expected_average_only_in` scaling factor (not trained on). */
  n_batches_for_norm_estimate: number;
  /** Initial decoder row norm (Anthropic's April 2024 heuristic); null keeps Kaiming-uniform rows. */
  decoder_init_norm: number | null;
  /** Keep decoder rows at unit norm throughout training (Gemma Scope). */
  normalize_sae_decoder: boolean;
  b_dec_init_method: BDecInitMethod;

  // Architecture options (their files own their defaults and say which architectures read them).
  l1_coefficient: number;
  l1_warm_up_steps: number;
  l0_coefficient: number;
  l0_warm_up_steps: number;
  jumprelu_bandwidth: number;
  jumprelu_init_threshold: number;
  k: number;
  aux_loss_coefficient: number;
  rescale_acts_by_decoder_norm: boolean;
  topk_threshold_lr: number;
  matryoshka_widths: number[];

  lr: number;
  lr_scheduler_name: LrSchedulerName;
  lr_warm_up_steps: number;
  lr_decay_steps: number;
  /** Floor of the cosine schedules and start of their linear decay; null means lr / 10. */
  lr_end: number | null;
  n_restart_cycles: number;
  adam_beta1: number;
  adam_beta2: number;
  /** Global gradient-norm clip (SAELens hard-codes 1.0); 0 disables. */
  max_grad_norm: number;
  training_tokens: number;
  train_batch_size_tokens: number;
  dead_feature_window: number;
  feature_sampling_window: number;
  /**
   * Most tokens forward+backward at once: a larger batch is processed in row chunks whose gradients are
   * summed before the one optimiser update (bounds the [rows, d_sae] intermediates on the wasm heap).
   * null picks floor(2^25 / d_sae), so only big steps are chunked.
   */
  max_rows_per_chunk: number | null;
  seed: number;
  dtype: 'float32';
  /** Written to cfg.json `metadata` (model_name, context_size, prepend_bos, dataset_path, ...). */
  metadata: Record<string, unknown>;
}

/** What a caller supplies: the required fields plus any overrides. */
export type SaeTrainingConfigInput = Partial<SaeTrainingConfig> &
  Pick<SaeTrainingConfig, 'd_in' | 'd_sae' | 'hook_name'>;

type Kind =
  | { type: 'int'; min?: number; max?: number }
  | { type: 'number'; min?: number; max?: number; exclusiveMin?: number }
  | { type: 'bool' }
  | { type: 'string' }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'object' }
  | { type: 'intList' };

interface FieldSpec {
  kind: Kind;
  nullable?: boolean;
  /** Architectures the field applies to; absent means all. */
  only?: readonly string[];
}

const int = (min?: number, max?: number): Kind => ({ type: 'int', min, max });
const num = (min?: number, max?: number): Kind => ({ type: 'number', min, max });
const positive: Kind = { type: 'number', exclusiveMin: 0 };
const bool: Kind = { type: 'bool' };
type ArchitectureField =
  | 'l1_coefficient'
  | 'l1_warm_up_steps'
  | 'l0_coefficient'
  | 'l0_warm_up_steps'
  | 'jumprelu_bandwidth'
  | 'jumprelu_init_threshold'
  | 'k'
  | 'aux_loss_coefficient'
  | 'rescale_acts_by_decoder_norm'
  | 'topk_threshold_lr'
  | 'matryoshka_widths';

/** Each architecture option's spec and default, from the architectures that declare it. */
function architectureFields(): { fields: Record<string, FieldSpec>; defaults: Record<string, unknown> } {
  const fields: Record<string, FieldSpec> = {};
  const defaults: Record<string, unknown> = {};
  for (const arch of ARCHITECTURES.values()) {
    for (const [name, option] of Object.entries(arch.options)) {
      const known = fields[name];
      if (known === undefined) {
        fields[name] = { kind: optionKind(option), only: [arch.name] };
        defaults[name] = option.default;
      } else {
        (known.only as string[]).push(arch.name);
        if (JSON.stringify(defaults[name]) !== JSON.stringify(option.default))
          throw new Error(
            `architecture ${arch.name}: option ${name} has another default than other architectures`,
          );
      }
    }
  }
  return { fields, defaults };
}

function optionKind(option: ArchitectureOption): Kind {
  return option.kind;
}

const ARCH = architectureFields();

const COMMON_FIELDS: Record<Exclude<keyof SaeTrainingConfig, ArchitectureField>, FieldSpec> = {
  name: { kind: { type: 'string' } },
  architecture: { kind: { type: 'enum', values: architectureNames() } },
  d_in: { kind: int(1) },
  d_sae: { kind: int(1) },
  d_out: { kind: int(1), nullable: true },
  skip_connection: { kind: bool },
  hook_name: { kind: { type: 'string' } },
  hook_name_out: { kind: { type: 'string' }, nullable: true },
  apply_b_dec_to_input: { kind: bool },
  normalize_activations: { kind: { type: 'enum', values: TRAINING_NORMALIZATIONS } },
  n_batches_for_norm_estimate: { kind: int(1) },
  decoder_init_norm: { kind: positive, nullable: true },
  normalize_sae_decoder: { kind: bool },
  b_dec_init_method: { kind: { type: 'enum', values: B_DEC_INIT_METHODS } },
  lr: { kind: positive },
  lr_scheduler_name: { kind: { type: 'enum', values: LR_SCHEDULERS } },
  lr_warm_up_steps: { kind: int(0) },
  lr_decay_steps: { kind: int(0) },
  lr_end: { kind: num(0), nullable: true },
  n_restart_cycles: { kind: int(1) },
  adam_beta1: { kind: num(0, 0.999999) },
  adam_beta2: { kind: num(0, 0.999999) },
  max_grad_norm: { kind: num(0) },
  training_tokens: { kind: int(1) },
  train_batch_size_tokens: { kind: int(1) },
  dead_feature_window: { kind: int(1) },
  feature_sampling_window: { kind: int(1) },
  max_rows_per_chunk: { kind: int(1), nullable: true },
  seed: { kind: int() },
  dtype: { kind: { type: 'enum', values: ['float32'] } },
  metadata: { kind: { type: 'object' } },
};

const FIELDS = { ...COMMON_FIELDS, ...ARCH.fields } as Record<keyof SaeTrainingConfig, FieldSpec>;

/** Whether a per-SAE field means something for an architecture (`k` does for topk, not for standard). */
export function fieldAppliesTo(field: keyof SaeTrainingConfig, architecture: SaeArchitecture): boolean {
  const only = FIELDS[field].only;
  return only === undefined || only.includes(architecture);
}

type Defaults = Omit<SaeTrainingConfig, 'name' | 'd_in' | 'd_sae' | 'hook_name' | 'apply_b_dec_to_input'>;

/** SAELens's defaults (6.x); `name`, `d_out`-dependent and architecture-dependent ones are filled in below. */
const COMMON_DEFAULTS: Omit<Defaults, ArchitectureField> = {
  architecture: 'standard',
  d_out: null,
  skip_connection: false,
  hook_name_out: null,
  normalize_activations: 'none',
  n_batches_for_norm_estimate: 1000,
  decoder_init_norm: 0.1,
  normalize_sae_decoder: false,
  b_dec_init_method: 'zeros',
  lr: 3e-4,
  lr_scheduler_name: 'constant',
  lr_warm_up_steps: 0,
  lr_decay_steps: 0,
  lr_end: null,
  n_restart_cycles: 1,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  max_grad_norm: 1.0,
  training_tokens: 2_000_000,
  train_batch_size_tokens: 4096,
  dead_feature_window: 1000,
  feature_sampling_window: 2000,
  max_rows_per_chunk: null,
  seed: 42,
  dtype: 'float32',
  metadata: {},
};

const DEFAULTS = { ...COMMON_DEFAULTS, ...ARCH.defaults } as Defaults;

function describe(kind: Kind): string {
  switch (kind.type) {
    case 'int':
      return kind.min !== undefined ? `an integer >= ${kind.min}` : 'an integer';
    case 'number':
      if (kind.exclusiveMin !== undefined) return `a number > ${kind.exclusiveMin}`;
      if (kind.min !== undefined && kind.max !== undefined) return `a number in [${kind.min}, ${kind.max}]`;
      return kind.min !== undefined ? `a number >= ${kind.min}` : 'a number';
    case 'bool':
      return 'true or false';
    case 'string':
      return 'a non-empty string';
    case 'enum':
      return `one of ${kind.values.map((v) => `'${v}'`).join(', ')}`;
    case 'object':
      return 'a JSON object';
    case 'intList':
      return 'a list of integers';
  }
}

function fits(kind: Kind, v: unknown): boolean {
  switch (kind.type) {
    case 'int':
      return (
        Number.isSafeInteger(v) &&
        (kind.min === undefined || (v as number) >= kind.min) &&
        (kind.max === undefined || (v as number) <= kind.max)
      );
    case 'number':
      return (
        typeof v === 'number' &&
        Number.isFinite(v) &&
        (kind.min === undefined || v >= kind.min) &&
        (kind.max === undefined || v <= kind.max) &&
        (kind.exclusiveMin === undefined || v > kind.exclusiveMin)
      );
    case 'bool':
      return typeof v === 'boolean';
    case 'string':
      return typeof v === 'string' && v.length > 0;
    case 'enum':
      return typeof v === 'string' && kind.values.includes(v);
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    case 'intList':
      return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x));
  }
}

/** Steps the schedules are built for, as SAELens counts them. */
export function totalTrainingSteps(cfg: SaeTrainingConfig): number {
  return Math.floor(cfg.training_tokens / cfg.train_batch_size_tokens);
}

/** Elements of one [rows, d_sae] intermediate the automatic chunk size stays under (128 MB of float32). */
export const AUTO_CHUNK_ELEMENTS = 2 ** 25;

/** Rows processed at once: `max_rows_per_chunk`, or what keeps rows × d_sae under AUTO_CHUNK_ELEMENTS. */
export function maxRowsPerChunk(cfg: SaeTrainingConfig): number {
  return cfg.max_rows_per_chunk ?? Math.max(1, Math.floor(AUTO_CHUNK_ELEMENTS / cfg.d_sae));
}

export function isTranscoder(cfg: SaeTrainingConfig): boolean {
  return cfg.d_out !== null;
}

/** Width of the output side (d_in for an SAE). */
export function outputWidth(cfg: SaeTrainingConfig): number {
  return cfg.d_out ?? cfg.d_in;
}

/** The hook whose activations are the reconstruction target. */
export function targetHook(cfg: SaeTrainingConfig): string {
  return cfg.hook_name_out ?? cfg.hook_name;
}

/**
 * Fills SAELens defaults and validates every field. `where` prefixes messages (e.g. `saes[2]`). A field
 * that belongs to another architecture (`k` on a standard SAE) is an error unless it holds its default,
 * rather than silently ignored; a field given as null or undefined takes its default.
 */
export function resolveSaeTrainingConfig(input: unknown, where = 'sae'): SaeTrainingConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new UserError(`${where}: an SAE training config must be an object, got ${JSON.stringify(input)}`);
  }
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as Record<
    string,
    unknown
  >;
  const bad = (field: string, message: string): UserError => new UserError(`${where}.${field}: ${message}`);

  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(FIELDS, key)) {
      throw bad(key, `unknown option (known: ${Object.keys(FIELDS).join(', ')})`);
    }
  }
  const architecture = given.architecture ?? DEFAULTS.architecture;
  if (!fits(FIELDS.architecture.kind, architecture)) {
    throw bad(
      'architecture',
      `must be ${describe(FIELDS.architecture.kind)}, got ${JSON.stringify(architecture)}`,
    );
  }
  for (const [key, value] of Object.entries(given)) {
    const spec = FIELDS[key as keyof SaeTrainingConfig];
    if (value === null) {
      if (spec.nullable) continue;
      if (key in DEFAULTS) {
        delete given[key];
        continue;
      }
      throw bad(key, `is required and must be ${describe(spec.kind)}`);
    }
    if (spec.only && !spec.only.includes(architecture as string)) {
      // A resolved config carries every field; only a non-default value for another architecture is a mistake.
      if (JSON.stringify(value) === JSON.stringify(DEFAULTS[key as keyof typeof DEFAULTS])) continue;
      throw bad(
        key,
        `does not apply to architecture '${architecture as string}' (only to ${spec.only.join(', ')})`,
      );
    }
    if (!fits(spec.kind, value)) {
      throw bad(
        key,
        `must be ${describe(spec.kind)}${spec.nullable ? ' or null' : ''}, got ${JSON.stringify(value)}`,
      );
    }
  }
  for (const key of ['d_in', 'd_sae', 'hook_name'] as const) {
    if (given[key] === undefined) throw bad(key, `is required (${describe(FIELDS[key].kind)})`);
  }

  const partial = { ...DEFAULTS, ...given } as Omit<SaeTrainingConfig, 'name' | 'apply_b_dec_to_input'> &
    Partial<SaeTrainingConfig>;
  const transcoder = partial.d_out !== null;
  const cfg: SaeTrainingConfig = {
    ...partial,
    name: partial.name ?? `${partial.architecture}-${partial.hook_name}-${partial.d_sae}`,
    apply_b_dec_to_input: partial.apply_b_dec_to_input ?? !transcoder,
    metadata: { ...partial.metadata },
    matryoshka_widths: [...partial.matryoshka_widths],
  };
  checkConsistency(cfg, bad);
  return cfg;
}

function checkConsistency(cfg: SaeTrainingConfig, bad: (field: string, message: string) => UserError): void {
  if (!/^[A-Za-z0-9._-]+$/.test(cfg.name) || cfg.name === '.' || cfg.name === '..') {
    throw bad('name', `'${cfg.name}' must use only letters, digits, '.', '_' and '-' (it names a folder)`);
  }
  const transcoder = cfg.d_out !== null;
  if (!transcoder && cfg.hook_name_out !== null) {
    throw bad('hook_name_out', 'is only for transcoders (set d_out too)');
  }
  if (!transcoder && cfg.skip_connection)
    throw bad('skip_connection', 'is only for transcoders (set d_out too)');
  if (transcoder && cfg.hook_name_out === null) {
    throw bad('hook_name_out', 'is required for a transcoder (the hook whose activations it predicts)');
  }
  if (cfg.apply_b_dec_to_input && cfg.d_out !== null && cfg.d_out !== cfg.d_in) {
    throw bad(
      'apply_b_dec_to_input',
      `must be false for a transcoder whose d_out (${cfg.d_out}) differs from d_in (${cfg.d_in}): b_dec has the output width`,
    );
  }
  if (transcoder && cfg.apply_b_dec_to_input && cfg.normalize_activations !== 'none') {
    throw bad(
      'apply_b_dec_to_input',
      'cannot be combined with normalize_activations for a transcoder: input and output are scaled by different factors',
    );
  }
  const arch = ARCHITECTURES.get(cfg.architecture)!;
  if ('k' in arch.options && cfg.k > cfg.d_sae) {
    throw bad('k', `(${cfg.k}) must not exceed d_sae (${cfg.d_sae})`);
  }
  const problem = arch.validate?.(cfg);
  if (problem) throw bad(problem.field, problem.message);
  if (cfg.training_tokens < cfg.train_batch_size_tokens) {
    throw bad(
      'training_tokens',
      `(${cfg.training_tokens}) is less than one batch (train_batch_size_tokens = ${cfg.train_batch_size_tokens})`,
    );
  }
  const steps = totalTrainingSteps(cfg);
  if (cfg.lr_warm_up_steps + cfg.lr_decay_steps > steps) {
    throw bad(
      'lr_decay_steps',
      `lr_warm_up_steps (${cfg.lr_warm_up_steps}) + lr_decay_steps (${cfg.lr_decay_steps}) exceed the ${steps} training steps`,
    );
  }
  const lrEnd = cfg.lr_end ?? cfg.lr / 10;
  if (cfg.lr_scheduler_name !== 'constant' && cfg.lr_decay_steps > 0 && lrEnd === 0) {
    throw bad(
      'lr_end',
      'must be > 0 when a cosine schedule is followed by lr_decay_steps (it would decay 0 to 0)',
    );
  }
  if (cfg.lr_scheduler_name === 'cosineannealingwarmrestarts') {
    const mainSteps = steps - cfg.lr_warm_up_steps - cfg.lr_decay_steps;
    if (Math.floor(mainSteps / cfg.n_restart_cycles) < 1) {
      throw bad(
        'n_restart_cycles',
        `(${cfg.n_restart_cycles}) leaves cycles shorter than one step (${mainSteps} steps)`,
      );
    }
  }
}

/** The lr at which cosine schedules end and linear decay starts (SAELens: lr / 10 unless lr_end is set). */
export function resolvedLrEnd(cfg: SaeTrainingConfig): number {
  return cfg.lr_end ?? cfg.lr / 10;
}

/** Validates a list of configs for one trainer: unique names and one batch size for the shared stream. */
export function resolveSaeTrainingConfigs(inputs: readonly unknown[], where = 'saes'): SaeTrainingConfig[] {
  if (!Array.isArray(inputs) || inputs.length === 0) {
    throw new UserError(`${where}: at least one SAE training config is required`);
  }
  const configs = inputs.map((c, i) => resolveSaeTrainingConfig(c, `${where}[${i}]`));
  const seen = new Map<string, number>();
  configs.forEach((c, i) => {
    const previous = seen.get(c.name);
    if (previous !== undefined) {
      throw new UserError(
        `${where}[${i}].name: '${c.name}' is already used by ${where}[${previous}]; names must be unique`,
      );
    }
    seen.set(c.name, i);
  });
  const batch = configs[0]!.train_batch_size_tokens;
  configs.forEach((c, i) => {
    if (c.train_batch_size_tokens !== batch) {
      throw new UserError(
        `${where}[${i}].train_batch_size_tokens: ${c.train_batch_size_tokens} differs from ${where}[0]'s ${batch}; SAEs trained from one stream share the batch`,
      );
    }
  });
  return configs;
}
