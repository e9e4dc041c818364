/**
 * Every SAE architecture by name, and the inference encoders they save as. Each architecture is one file
 * in this folder; adding one is that file plus a line here.
 */
import { UserError } from '../../pipeline/errors.js';
import type { EncoderKind } from '../saved-architecture.js';
import { batchtopk } from './batchtopk.js';
import { gated } from './gated.js';
import { jumprelu } from './jumprelu.js';
import { matryoshkaBatchTopK } from './matryoshka-batchtopk.js';
import { standard } from './standard.js';
import { topk } from './topk.js';
import type { Architecture, InferenceEncoder } from './types.js';

const ALL: readonly Architecture[] = [standard, topk, batchtopk, jumprelu, gated, matryoshkaBatchTopK];

export const ARCHITECTURES = new Map(ALL.map((a) => [a.name, a]));

export function architectureNames(): string[] {
  return ALL.map((a) => a.name);
}

export function architectureOf(name: string): Architecture {
  const a = ARCHITECTURES.get(name);
  if (a === undefined)
    throw new UserError(`unknown architecture '${name}' (known: ${architectureNames().join(', ')})`);
  return a;
}

const ENCODERS = new Map<EncoderKind, InferenceEncoder>(
  ALL.flatMap((a) => (a.encoder === undefined ? [] : [[a.encoder.kind, a.encoder] as const])),
);

export function encoderFor(kind: EncoderKind): InferenceEncoder {
  const e = ENCODERS.get(kind);
  if (e === undefined) throw new Error(`no architecture defines the ${kind} encoder`);
  return e;
}
