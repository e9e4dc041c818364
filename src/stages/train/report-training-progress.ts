/**
 * Advances the run's progress by each step's tokens (normalisation-estimate batches count as items, not
 * training tokens) and shows the first SAE's latest loss, L0, explained variance, dead features (by window) and features
 * that never fired.
 */
import { tap } from 'rxjs';
import type { Progress } from '../../pipeline/progress.js';
import { defineStage, type Stage } from '../../pipeline/stage.js';
import type { TrainingStep } from './train-steps.js';

export function reportTrainingProgress(progress: Progress): Stage<TrainingStep, TrainingStep> {
  return defineStage(
    'report-training-progress',
    tap((step: TrainingStep) => {
      progress.advance({ items: 1, tokens: step.phase === 'train' ? step.rows : 0 });
      const m = step.saes[0];
      if (m)
        progress.report({
          loss: m.loss,
          l0: m.l0,
          ev: m.explained_variance,
          dead: m.dead_features,
          'never fired': m.never_fired_features,
        });
    }),
  );
}
