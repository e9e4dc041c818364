/**
 * Learning-rate and sparsity-coefficient schedules, as closed forms of what SAELens builds from PyTorch
 * schedulers (`get_lr_scheduler`, `CoefficientScheduler`). `step` is the 0-based index of the optimiser
 * step the value is used for.
 *
 * lr: linear warm-up lr·(step+1)/W over `lr_warm_up_steps` W, then the main schedule over
 * T - W - D steps (constant lr; cosine from lr down to lr_end; cosine with `n_restart_cycles` restarts),
 * then a linear decay to 0 over the last `lr_decay_steps` D (from lr for constant, from lr_end for cosine).
 */
import { resolvedLrEnd, totalTrainingSteps } from '../config.js';
import { architectureOf } from '../architectures/registry.js';
import type { SaeTrainingConfig } from '../config.js';

function cosine(from: number, to: number, t: number, period: number): number {
  return to + ((from - to) * (1 + Math.cos((Math.PI * t) / period))) / 2;
}

export function learningRateAt(cfg: SaeTrainingConfig, step: number): number {
  const total = totalTrainingSteps(cfg);
  const warm = cfg.lr_warm_up_steps;
  const decay = cfg.lr_decay_steps;
  const lrEnd = resolvedLrEnd(cfg);
  if (step < warm) return (cfg.lr * (step + 1)) / warm;
  const decayStart = total - decay;
  if (decay > 0 && step >= decayStart) {
    const from = cfg.lr_scheduler_name === 'constant' ? cfg.lr : lrEnd;
    return from * Math.max(0, 1 - (step - decayStart) / decay);
  }
  const mainSteps = total - warm - decay;
  const t = step - warm;
  switch (cfg.lr_scheduler_name) {
    case 'constant':
      return cfg.lr;
    case 'cosineannealing':
      return mainSteps <= 0 ? lrEnd : cosine(cfg.lr, lrEnd, Math.min(t, mainSteps), mainSteps);
    case 'cosineannealingwarmrestarts': {
      const period = Math.max(1, Math.floor(mainSteps / cfg.n_restart_cycles));
      return cosine(cfg.lr, lrEnd, t % period, period);
    }
  }
}

/** SAELens's CoefficientScheduler: 0 at step 0, rising linearly to `final` at step `warmUpSteps`. */
export function coefficientAt(final: number, warmUpSteps: number, step: number): number {
  if (warmUpSteps <= 0) return final;
  return (final * Math.min(step, warmUpSteps)) / warmUpSteps;
}

/** The sparsity coefficient an architecture uses at `step`, by its SAELens name (l1, l0), if it has one. */
export function sparsityCoefficient(
  cfg: SaeTrainingConfig,
  step: number,
): { name: string; value: number } | null {
  const c = architectureOf(cfg.architecture).coefficient;
  if (c === undefined) return null;
  return { name: c.name, value: coefficientAt(cfg[c.value], cfg[c.warmUpSteps], step) };
}
