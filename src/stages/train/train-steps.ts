/**
 * The trainer as a stage: shuffled training batches in, one value per batch out (an optimiser step of
 * every SAE still training, or a normalisation-estimate batch). Batches wait here until there are as many
 * as the trainer takes in one call (a chunk of onnx steps); when the input ends they are trained, unless
 * the run was interrupted (a resumed run replays them). Hook widths are checked on the first batch.
 * Metrics, progress, checkpoints and the final save are separate operators downstream.
 */
import { asyncStage } from '../../pipeline/async-stage.js';
import type { Flow } from '../../pipeline/flow.js';
import type { Stage } from '../../pipeline/stage.js';
import type { SaeTrainer, TrainerStepResult } from '../../sae/index.js';
import type { TrainingBatch } from '../store/activation-store.js';

/** One consumed batch: the trainer's result and the batch's size. */
export interface TrainingStep extends TrainerStepResult {
  rows: number;
}

export function trainSteps(
  trainer: SaeTrainer,
  options: { flow?: Flow } = {},
): Stage<TrainingBatch, TrainingStep> {
  let checked = false;
  const pending: TrainingBatch[] = [];
  const train = async (emit: (step: TrainingStep) => void): Promise<void> => {
    const batches = pending.splice(0);
    const results = await trainer.steps(batches.map((b) => ({ rows: b.rows, activations: b.hooks })));
    results.forEach((r, i) => emit({ ...r, rows: batches[i]!.rows }));
  };
  return asyncStage<TrainingBatch, TrainingStep>(
    'train-steps',
    async (batch, emit) => {
      if (trainer.done) return;
      if (!checked) {
        const widths = Object.fromEntries(
          Object.entries(batch.hooks).map(([h, v]) => [h, v.length / batch.rows]),
        );
        trainer.checkHookWidths(widths);
        checked = true;
      }
      pending.push(batch);
      if (pending.length >= trainer.batchesWanted(batch.rows) || pending[0]!.rows !== batch.rows)
        await train(emit);
    },
    {
      flow: options.flow,
      flush: async (emit) => {
        if (pending.length > 0 && !options.flow?.stopped && !trainer.done) await train(emit);
      },
    },
  );
}
