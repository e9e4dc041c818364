// Trains sparse autoencoders on a residual-stream hook of GPT-2 (or the embedded tiny-gpt2 offline),
// from a live model stream or an activation cache (--activations). A sweep (--saes '[{...}, ...]')
// trains several SAEs from one stream. SAELens folders land in <run>/saes/<name>/.
//
// The flow: text -> tokens -> context windows -> model hooks (or a Parquet cache) -> shuffled training
// batches -> one optimiser step per batch -> metrics, progress, checkpoints -> the saved SAEs.
import path from 'node:path';
import { defer, finalize, mergeMap, skip, takeWhile, type Observable } from 'rxjs';
import type { ActivationBatch } from '../src/arrow/index.js';
import { definePipeline, opt, UserError, type RunContext } from '../src/pipeline/index.js';
import { cacheReader } from '../src/stages/cache/index.js';
import { modelActivations } from '../src/stages/model/index.js';
import {
  activationStore,
  STORE_SNAPSHOT_FILE,
  StoreTracker,
  writeStoreSnapshotSync,
} from '../src/stages/store/index.js';
import { documentSource, pack, tokenize } from '../src/stages/text/index.js';
import {
  checkpointEvery,
  cycleUntilStopped,
  finishTraining,
  prepareTraining,
  recordStepMetrics,
  reportTrainingProgress,
  requireTokensPerPass,
  trainSteps,
  trainingOptions,
  type TrainingConfig,
  type TrainingKind,
} from '../src/stages/train/index.js';
import { SAELENS_RUNNER_NAMES } from '../src/stages/train/saelens-names.js';

/** The training flow, shared with gpt2-transcoder.ts (which reads other hooks). */
export function trainSaes(cfg: TrainingConfig, ctx: RunContext, kind: TrainingKind) {
  return defer(async () => {
    const run = await prepareTraining(cfg, ctx, kind);
    const { trainer, model, hooks } = run;
    const flow = ctx.flow;
    // A resumed run's store holds what it had received; the input restarts right after that.
    const resumeAt = run.store ?? { inputBatches: 0, inputRows: 0 };
    // SAELens cycles its data until every SAE has seen its training_tokens.
    let activations: Observable<ActivationBatch>;
    if (model === null) {
      // Seek: the first pass starts at the saved row, later ones at the start.
      let startRow = resumeAt.inputRows % (run.rowsPerPass ?? Infinity);
      activations = cycleUntilStopped(() => {
        const reader = cacheReader({ path: cfg.activations!, hooks, flow, startRow });
        startRow = 0;
        return reader;
      }, flow);
    } else {
      const windows = () => {
        // A dataset too small for one training batch fails its first pass instead of cycling forever.
        const enough = requireTokensPerPass({
          need: cfg.train_batch_size_tokens,
          dataset: cfg.dataset,
          contextSize: cfg.context_size,
          flow,
        });
        return documentSource(cfg.dataset, { shuffle: true, seed: cfg.seed }, flow).pipe(
          tokenize(),
          enough.countTokens,
          pack({
            contextSize: cfg.context_size,
            batchSize: cfg.store_batch_size_prompts,
            prependBos: cfg.prepend_bos,
            disableConcatSequences: cfg.disable_concat_sequences,
          }),
          enough.checkWindows,
        );
      };
      // Windows the store already received are tokenized and packed again, but not run through the model.
      activations = cycleUntilStopped(windows, flow).pipe(
        skip(resumeAt.inputBatches),
        modelActivations({ model, hooks, flow }),
      );
    }
    const tracker = new StoreTracker(() => trainer.batches);
    trainer.addCheckpointPart((dir) => {
      const snapshot = tracker.snapshot();
      if (snapshot) writeStoreSnapshotSync(path.join(dir, STORE_SNAPSHOT_FILE), snapshot);
    });
    return activations.pipe(
      activationStore({
        hooks,
        trainBatchSizeTokens: cfg.train_batch_size_tokens,
        nBatchesInBuffer: cfg.n_batches_in_buffer,
        seed: cfg.seed,
        excludeTokenIds: run.excludeTokenIds,
        tracker,
        resume: run.store ?? undefined,
        stopped: () => flow.stopped,
      }),
      skip(run.resumeBatches),
      takeWhile(() => !trainer.done && !flow.stopped),
      trainSteps(trainer, { flow }),
      recordStepMetrics(ctx.metrics),
      reportTrainingProgress(ctx.progress),
      checkpointEvery(trainer, {
        tokens: cfg.checkpoint_every_tokens,
        minutes: cfg.checkpoint_every_minutes,
        dir: run.checkpointDir,
        flow,
        log: ctx.log,
      }),
      finishTraining(trainer, {
        checkpointDir: run.checkpointDir,
        outputDir: run.outputDir,
        flow,
        log: ctx.log,
      }),
      finalize(() => run.dispose()),
    );
  }).pipe(mergeMap((stream) => stream));
}

export default definePipeline({
  name: 'gpt2-resid',
  description: 'Train residual-stream SAEs (SAELens options) on GPT-2 activations.',
  config: {
    ...trainingOptions,
    hook: opt.nullable(opt.string('', 'hook name (default blocks.<layer>.hook_resid_pre)'), null),
    hook_name: opt.nullable(opt.string('', 'same as --hook (SAELens name)'), null),
  },
  foreignNames: SAELENS_RUNNER_NAMES,
  usesTensorflowJs: (cfg) => cfg.engine === 'tfjs',
  build(cfg, ctx) {
    if (cfg.hook !== null && cfg.hook_name !== null && cfg.hook !== cfg.hook_name) {
      throw new UserError(`--hook ${cfg.hook} and --hook_name ${cfg.hook_name} disagree; give one of them`);
    }
    const hook = cfg.hook ?? cfg.hook_name;
    return trainSaes(cfg, ctx, {
      hooks: (layer) => ({ hook_name: hook ?? `blocks.${layer}.hook_resid_pre` }),
    });
  },
});
