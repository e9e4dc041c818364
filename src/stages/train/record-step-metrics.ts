/** Writes each SAE's step metrics to metrics.jsonl (`event: "train"`, one record per SAE per step). */
import { tap } from 'rxjs';
import type { MetricsWriter } from '../../pipeline/metrics.js';
import { defineStage, type Stage } from '../../pipeline/stage.js';
import type { TrainingStep } from './train-steps.js';

export function recordStepMetrics(metrics: MetricsWriter): Stage<TrainingStep, TrainingStep> {
  return defineStage(
    'record-step-metrics',
    tap((step: TrainingStep) => {
      for (const m of step.saes) metrics.write('train', { ...m });
    }),
  );
}
