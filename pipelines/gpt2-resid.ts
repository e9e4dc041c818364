// Trains sparse autoencoders on a residual-stream hook of GPT-2 (or the embedded tiny-gpt2 offline),
// from a live model stream or an activation cache (--activations). A sweep (--saes '[{...}, ...]')
// trains several SAEs from one stream. SAELens folders land in <run>/saes/<name>/.
//
// The flow: text -> tokens -> context windows -> model hooks (or a Parquet cache) -> shuffled training
// batches -> one optimiser step per batch -> metrics, progress, checkpoints -> the saved SAEs.
import { defer, finalize, mergeMap, skip, takeWhile } from 'rxjs';
import { checkSweepSplit } from '../src/cluster/sweep-parts.js';
import { definePipeline, opt, UserError, type RunContext } from '../src/pipeline/index.js';
import { activationStore, storeCheckpointPart, StoreTracker } from '../src/stages/store/index.js';
import {
  checkpointEvery,
  finishTraining,
  prepareTraining,
  recordStepMetrics,
  reportTrainingProgress,
  STREAM_START,
  trainingActivations,
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
    const { trainer, hooks } = run;
    const flow = ctx.flow;
    const tracker = new StoreTracker(() => trainer.batches);
    trainer.addCheckpointPart(storeCheckpointPart(tracker));
    // A resumed run's store holds what it had received; its input restarts right after that.
    return trainingActivations(cfg, run, run.store ?? STREAM_START, flow).pipe(
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
  split: {
    finish(dir, cfg, count) {
      checkSweepSplit(count, Math.max(cfg.saes.length, 1), `--array ${count}`);
      return { pipeline: 'pipelines/gather-sweep.ts', args: ['--sweep', dir] };
    },
  },
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
