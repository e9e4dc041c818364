/**
 * Writes a resumable checkpoint (SAELens folders plus optimiser and trainer state) every `tokens` training
 * tokens, passing the steps through. The trainer serialises saves with steps, so a checkpoint is always a
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
  options: { tokens: number; dir: string; flow?: Flow; log?: Logger },
): Stage<TrainingStep, TrainingStep> {
  let since = 0;
  return asyncStage<TrainingStep, TrainingStep>(
    'checkpoint-every',
    async (step, emit) => {
      since += step.rows;
      if (options.tokens > 0 && since >= options.tokens && !trainer.done) {
        since = 0;
        await trainer.saveCheckpoint(options.dir);
        options.log?.info(`checkpoint after ${trainer.batches} batches: ${options.dir}`);
      }
      emit(step);
    },
    { flow: options.flow },
  );
}
