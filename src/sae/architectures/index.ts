import type { SaeArchitecture } from '../config.js';
import { batchtopk } from './batchtopk.js';
import { gated } from './gated.js';
import { jumprelu } from './jumprelu.js';
import { standard } from './standard.js';
import { topk } from './topk.js';
import type { ArchitectureModule } from './types.js';

export const ARCHITECTURE_MODULES: Readonly<Record<SaeArchitecture, ArchitectureModule>> = {
  standard,
  topk,
  batchtopk,
  jumprelu,
  gated,
};

export type { ArchitectureModule, ForwardResult, Grads, ParamName, Params, StepInput } from './types.js';
