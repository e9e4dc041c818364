/**
 * The evaluator as pipeline stages: token batches in, one small record per batch out (for progress), the
 * results staying in the evaluator / collector until the stream completes.
 */
import { asyncStage } from '../pipeline/async-stage.js';
import type { Flow } from '../pipeline/flow.js';
import type { Stage } from '../pipeline/stage.js';
import type { TokenBatch } from '../stages/text/types.js';
import type { DashboardCollector } from './dashboards.js';
import type { SaeEvaluator } from './evaluator.js';

export interface BatchDone {
  /** Token positions in the batch. */
  tokens: number;
}

/** Pass 1: every metric of every SAE, accumulated batch by batch. */
export function saeEvaluation(
  evaluator: SaeEvaluator,
  options: { flow?: Flow } = {},
): Stage<TokenBatch, BatchDone> {
  return asyncStage<TokenBatch, BatchDone>(
    'sae-evaluation',
    async (batch, emit) => {
      await evaluator.evaluateBatch(batch);
      emit({ tokens: batch.batchSize * batch.contextSize });
    },
    { flow: options.flow },
  );
}

/** Pass 2: top contexts and activation histograms of the features chosen for dashboards. */
export function dashboardContexts(
  collector: DashboardCollector,
  options: { flow?: Flow } = {},
): Stage<TokenBatch, BatchDone> {
  return asyncStage<TokenBatch, BatchDone>(
    'dashboard-contexts',
    async (batch, emit) => {
      await collector.addBatch(batch);
      emit({ tokens: batch.batchSize * batch.contextSize });
    },
    { flow: options.flow },
  );
}
