/**
 * Writes a resumable checkpoint (SAELens folders plus optimiser and trainer state) every `tokens` training
 * tokens and every `minutes` minutes (0 disables either), passing the steps through. The time limit bounds
 * what a run killed without warning (SIGKILL, a lost node) loses. The trainer serialises saves with steps, so a checkpoint is always a
 * state between two steps (possibly a few steps after the one that triggered it).
 */
import { asyncStage } from '../../pipeline/async-stage.js';
import type { Flow } from '../../pipeline/flow.js';
import type { Logger } from '../../pipeline/logger.js';
import type { Stage } from '../../pipeline/stage.js';
import type { SaeTrainer } from '../../sae/index.js';
import type { TrainingStep } from './train-steps.js';

export function checkpointEvery(
  trainer: SaeTrainer,
  options: {
    tokens: number;
    minutes?: number;
    dir: string;
    flow?: Flow;
    log?: Logger;
    /** Clock in milliseconds (tests replace it). */
    now?: () => number;
  },
): Stage<TrainingStep, TrainingStep> {
  const now = options.now ?? Date.now;
  const everyMs = (options.minutes ?? 0) * 60_000;
  let since = 0;
  let lastAt = now();
  return asyncStage<TrainingStep, TrainingStep>(
    'checkpoint-every',
    async (step, emit) => {
      since += step.rows;
      const byTokens = options.tokens > 0 && since >= options.tokens;
      const byTime = everyMs > 0 && now() - lastAt >= everyMs;
      if ((byTokens || byTime) && !trainer.done) {
        since = 0;
        lastAt = now();
        await trainer.saveCheckpoint(options.dir);
        options.log?.info(`checkpoint after ${trainer.batches} batches: ${options.dir}`);
      }
      emit(step);
    },
    { flow: options.flow },
  );
}
