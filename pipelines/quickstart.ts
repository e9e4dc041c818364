// The offline quickstart, the whole slice on what ships with saeflow: the embedded Moby-Dick corpus ->
// the embedded tiny-gpt2 -> residual-stream activations -> a sparsity sweep of TopK SAEs trained from one
// activation stream -> evaluation on held-out text (State of the Union addresses) -> an HTML report.
// It composes the gpt2-resid and eval-sae pipelines; run those directly for more control.
import path from 'node:path';
import { concat, defer, EMPTY, last, map, mergeMap, type Observable } from 'rxjs';
import { definePipeline, opt } from '../src/pipeline/index.js';
import { defaultsOf } from '../src/pipeline/resolve-config.js';
import evalSae from './eval-sae.js';
import gpt2Resid from './gpt2-resid.js';

export default definePipeline({
  name: 'quickstart',
  description:
    'Offline: train a sweep of SAEs on the embedded model and corpus, evaluate them, write a report and explorers.',
  config: {
    model: opt.string('tiny-gpt2', 'model (tiny-gpt2 is embedded; gpt2 needs its weights in the HF cache)'),
    dataset: opt.string('moby-dick', 'training text'),
    eval_dataset: opt.string('sotu', 'held-out evaluation text'),
    layer: opt.int(2, 'layer whose hook_resid_pre the SAEs read', { min: 0 }),
    ks: opt.numberList([8, 16, 32], 'the sweep: one TopK SAE per k', { min: 1 }),
    d_sae: opt.int(512, 'features per SAE', { min: 1 }),
    training_tokens: opt.int(300_000, 'training tokens per SAE', { min: 1 }),
    lr: opt.number(1e-3, 'learning rate', { min: 0 }),
    n_eval_tokens: opt.int(4096, 'held-out tokens to evaluate on', { min: 1 }),
    n_dashboard_features: opt.int(6, 'feature dashboards per SAE', { min: 0 }),
    explorer: opt.boolean(true, 'export a live feature explorer per SAE, linked from the report'),
  },
  // Training and evaluation both run on onnxruntime.
  usesTensorflowJs: () => false,
  build(cfg, ctx) {
    // A pipeline's build may return its observable or a promise of one.
    const stream = <T>(build: () => Observable<T> | Promise<Observable<T>>) =>
      defer(async () => build()).pipe(mergeMap((o) => o));
    const train = stream(() => {
      ctx.progress.startPhase('training', cfg.training_tokens);
      return gpt2Resid.build(
        {
          ...defaultsOf(gpt2Resid.config),
          model: cfg.model,
          dataset: cfg.dataset,
          layer: cfg.layer,
          engine: 'auto',
          d_sae: cfg.d_sae,
          lr: cfg.lr,
          training_tokens: cfg.training_tokens,
          train_batch_size_tokens: 2048,
          normalize_activations: 'expected_average_only_in',
          n_batches_for_norm_estimate: 10,
          saes: cfg.ks.map((k) => ({ architecture: 'topk', k, name: `topk-k${k}` })),
        },
        ctx,
      );
    });
    const evaluate = stream(() => {
      ctx.progress.startPhase('evaluation', cfg.n_eval_tokens);
      return evalSae.build(
        {
          ...defaultsOf(evalSae.config),
          sae: [path.join(ctx.runDir, 'saes')],
          model: cfg.model,
          // onnxruntime (auto's choice) evaluates the SAEs in its graph, without shipping full logits to the host.
          engine: 'auto',
          dataset: cfg.eval_dataset,
          n_eval_tokens: cfg.n_eval_tokens,
          n_dashboard_features: cfg.n_dashboard_features,
          explorer: cfg.explorer,
        },
        ctx,
      );
    });
    return concat(
      train.pipe(last()),
      defer(() => (ctx.flow.stopped ? EMPTY : evaluate)),
    ).pipe(
      last(),
      map((result) => {
        const report = (result as { report?: string }).report;
        if (report) {
          ctx.log.info(`open the report: ${report}`);
          if (cfg.explorer) ctx.log.info(`with its explorers, served: npx saeflow-serve ${ctx.runDir}`);
        }
        return result;
      }),
    );
  },
});
