/**
 * Rotary position embeddings as configured in Hugging Face's config.json, in both spellings in use:
 * transformers 4.x's top-level `rope_theta` + `rope_scaling` (and GPT-NeoX's `rotary_emb_base` +
 * `rotary_pct`), and transformers 5's `rope_parameters` (theta, type and scaling in one object, GPT-NeoX's
 * `partial_rotary_factor` inside it). The result is the per-pair inverse frequencies the forward multiplies
 * positions by; the angles themselves are computed in the graph, as transformers computes them.
 */
import { UserError } from '../pipeline/errors.js';

/** The rope types whose frequencies we compute; others (yarn, dynamic, longrope) are refused. */
export const ROPE_TYPES = ['default', 'linear', 'llama3'] as const;
export type RopeType = (typeof ROPE_TYPES)[number];

export interface RopeConfig {
  theta: number;
  type: RopeType;
  /** Dimensions of each head that rotate (the first ones); the rest pass through (GPT-NeoX's partial rotary). */
  rotaryDim: number;
  /** `linear` and `llama3`: the context extension factor. */
  factor?: number;
  /** `llama3` only. */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositions?: number;
}

type Json = Record<string, unknown>;

function num(obj: Json, key: string, where: string, dflt?: number): number {
  const v = obj[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new UserError(`${where}: field "${key}" must be a number, got ${JSON.stringify(obj[key])}`);
  }
  return v;
}

/**
 * Reads the rope settings of config.json. `defaultTheta` is the family's default base, `thetaKey` and
 * `partialKey` the family's 4.x spellings of the base and of the rotary fraction (GPT-NeoX:
 * `rotary_emb_base`, `rotary_pct`), `defaultFraction` the fraction when config.json names none.
 */
export function parseRope(
  json: Json,
  file: string,
  headDim: number,
  opts: { defaultTheta: number; thetaKey?: string; partialKey?: string; defaultFraction?: number } = {
    defaultTheta: 10000,
  },
): RopeConfig {
  const params = json.rope_parameters;
  const legacy = json.rope_scaling;
  let scaling: Json | null = null;
  let where = file;
  let theta: number;
  let fraction = opts.defaultFraction ?? 1;
  if (params !== undefined && params !== null) {
    if (typeof params !== 'object' || Array.isArray(params)) {
      throw new UserError(`${file}: field "rope_parameters" must be an object`);
    }
    where = `${file} rope_parameters`;
    scaling = params as Json;
    theta = num(scaling, 'rope_theta', where, opts.defaultTheta);
    if (scaling.partial_rotary_factor !== undefined) fraction = num(scaling, 'partial_rotary_factor', where);
  } else {
    theta = num(json, opts.thetaKey ?? 'rope_theta', file, opts.defaultTheta);
    if (legacy !== undefined && legacy !== null) {
      if (typeof legacy !== 'object' || Array.isArray(legacy)) {
        throw new UserError(`${file}: field "rope_scaling" must be an object or null`);
      }
      scaling = legacy as Json;
      where = `${file} rope_scaling`;
    }
  }
  if (opts.partialKey !== undefined && json[opts.partialKey] !== undefined) {
    fraction = num(json, opts.partialKey, file);
  } else if (json.partial_rotary_factor !== undefined) {
    fraction = num(json, 'partial_rotary_factor', file);
  }
  if (!(theta > 0)) throw new UserError(`${where}: rope_theta must be positive, got ${theta}`);
  if (!(fraction > 0 && fraction <= 1)) {
    throw new UserError(`${file}: the rotary fraction must be in (0, 1], got ${fraction}`);
  }
  // transformers: int(head_dim * partial_rotary_factor).
  const rotaryDim = Math.floor(headDim * fraction);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    throw new UserError(
      `${file}: ${rotaryDim} rotary dimensions per head (of ${headDim}); expected an even number >= 2`,
    );
  }

  const type = (scaling?.rope_type ?? scaling?.type ?? 'default') as string;
  if (!(ROPE_TYPES as readonly string[]).includes(type)) {
    throw new UserError(
      `${where}: rope_type ${JSON.stringify(type)} is not supported (supported: ${ROPE_TYPES.join(', ')})`,
    );
  }
  const rope: RopeConfig = { theta, type: type as RopeType, rotaryDim };
  if (type === 'linear' || type === 'llama3') {
    rope.factor = num(scaling!, 'factor', where);
    if (!(rope.factor >= 1)) throw new UserError(`${where}: factor must be >= 1, got ${rope.factor}`);
  }
  if (type === 'llama3') {
    rope.lowFreqFactor = num(scaling!, 'low_freq_factor', where);
    rope.highFreqFactor = num(scaling!, 'high_freq_factor', where);
    rope.originalMaxPositions = num(scaling!, 'original_max_position_embeddings', where);
    if (!(rope.highFreqFactor > rope.lowFreqFactor)) {
      throw new UserError(`${where}: high_freq_factor must exceed low_freq_factor`);
    }
  }
  return rope;
}

/**
 * The inverse frequency of each rotating pair, [rotaryDim / 2], rounded to float32 where transformers
 * computes in float32 (`1 / theta ** (arange(0, dim, 2) / dim)`), then scaled as the rope type says.
 */
export function inverseFrequencies(rope: RopeConfig): Float32Array {
  const dim = rope.rotaryDim;
  const f = Math.fround;
  const base = Float32Array.from({ length: dim / 2 }, (_, i) => f(1 / f(rope.theta ** f((2 * i) / dim))));
  if (rope.type === 'default') return base;
  const factor = rope.factor!;
  if (rope.type === 'linear') return base.map((v) => f(v / factor));
  // Llama 3: long wavelengths are divided by the factor, short ones kept, those between blended
  // (transformers' _compute_llama3_parameters).
  const low = rope.lowFreqFactor!;
  const high = rope.highFreqFactor!;
  const old = rope.originalMaxPositions!;
  const lowFreqWavelen = old / low;
  const highFreqWavelen = old / high;
  return base.map((v) => {
    const wavelen = (2 * Math.PI) / v;
    if (wavelen < highFreqWavelen) return v;
    if (wavelen > lowFreqWavelen) return f(v / factor);
    const smooth = (old / wavelen - low) / (high - low);
    return f((1 - smooth) * (v / factor) + smooth * v);
  });
}
