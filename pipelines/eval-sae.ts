// Evaluates SAEs and transcoders (SAELens folders) on held-out tokens through the model: reconstruction,
// sparsity, CE loss / KL with the hook replaced, weight statistics, Pareto frontiers of a sweep, feature
// dashboards. Writes <run>/<sae>/eval.json, <run>/report-data.json and the report (report.html, report.md).
//
// Pass 1 streams the eval tokens once through every SAE (one clean forward, one zero-ablation forward per
// replaced hook and one patched forward per SAE, per batch; `--engine onnx` runs them all in one onnxruntime
// session run, SAEs, losses and KL included); pass 2 streams the same tokens again to collect the top
// contexts of the features chosen for dashboards (chosen from pass 1's densities).
//
// `--explorer true` then exports a live feature explorer per SAE into <run>/explorer/<sae>/ (the model and
// SAE encoder as onnxruntime-web runs them in a browser, with this run's dashboards), which the report links.
import path from 'node:path';
import { concat, defer, EMPTY, finalize, ignoreElements } from 'rxjs';
import {
  DashboardCollector,
  SaeEvaluator,
  dashboardContexts,
  describeEvalModel,
  modelSpecForSaes,
  findSaeFolders,
  loadEvalModel,
  loadEvalTargets,
  resolveWindowing,
  saeEvaluation,
  saeModelName,
  requestedDashboardFeatures,
  selectDashboardFeatures,
  writeEvalOutputs,
} from '../src/eval/index.js';
import type { FeatureContexts, SaeEvalResult } from '../src/eval/index.js';
import { ENGINES, resolveEngine } from '../src/engine/engines.js';
import { evalProcessing } from '../src/eval/model-processing.js';
import { writeReportData } from '../src/eval/report-data.js';
import { exportExplorers } from '../src/explorer/eval-explorers.js';
import { WEIGHT_PROCESSINGS } from '../src/model/index.js';
import { definePipeline, opt, trackProgress, UserError } from '../src/pipeline/index.js';
import { renderReport, REPORT_HTML } from '../src/report/index.js';
import { documentSource, pack, tokenize, windowRange } from '../src/stages/text/index.js';
import { loadTokenizer } from '../src/tokenizer/index.js';

export default definePipeline({
  name: 'eval-sae',
  description:
    'Evaluate SAEs / transcoders (SAELens metrics, sweeps, feature dashboards) and write a report.',
  config: {
    sae: opt.list(
      [],
      'SAE folders, or directories of SAE folders (a training run or its saes/), comma-separated',
    ),
    model: opt.string(
      'auto',
      'auto (the model the SAEs were trained on when their cfg.json records its folder, else gpt2 from the HF cache, else the embedded tiny-gpt2), tiny-gpt2, a directory, or a hub name',
    ),
    dataset: opt.string(
      'sotu',
      'text file, directory, glob, embedded corpus, or Hugging Face dataset id (default: sotu, text the training default moby-dick leaves out)',
    ),
    processing: opt.choice(
      ['auto', ...WEIGHT_PROCESSINGS],
      'auto',
      "model weight processing; auto: what the SAEs' cfg.json records (metadata.model_from_pretrained_kwargs), else none",
    ),
    engine: opt.choice(
      ENGINES,
      'auto',
      'model engine: onnx (onnxruntime: SAEs, losses and KL in its graph, much faster on CPU), tfjs (TensorFlow.js), or auto (onnx where onnxruntime runs)',
    ),
    context_size: opt.nullable(
      opt.int(128, "tokens per context window (default: the SAEs' context_size, else 128)", { min: 2 }),
      null,
    ),
    prepend_bos: opt.nullable(
      opt.boolean(
        true,
        "start every window with BOS (default: as the SAEs were trained, else TransformerLens's default for the model family)",
      ),
      null,
    ),
    disable_concat_sequences: opt.boolean(false, 'never join documents inside one window'),
    n_eval_tokens: opt.int(32_768, 'tokens to evaluate on (rounded up to whole windows)', { min: 1 }),
    skip_tokens: opt.int(0, 'skip this many dataset tokens first, e.g. those trained on (whole windows)', {
      min: 0,
    }),
    batch_size: opt.int(4, 'context windows per model forward', { min: 1 }),
    exclude_special_tokens: opt.boolean(
      true,
      "leave the tokenizer's special tokens (BOS/EOS/pad, GPT-2's <|endoftext|>) out of every metric",
    ),
    compute_kl: opt.boolean(
      true,
      'KL divergence metrics (with tfjs they need full logits on the host: roughly doubles the time)',
    ),
    n_dashboard_features: opt.int(8, 'features per SAE given a dashboard (0: no dashboards, one pass only)', {
      min: 0,
    }),
    features: opt.numberList(
      [],
      'feature ids given a dashboard in every SAE, e.g. 3,17 (instead of n_dashboard_features chosen across the density range)',
      { min: 0 },
    ),
    seed: opt.int(42, 'seed for the dashboard features drawn within each density range', { min: 0 }),
    ce_score_floor: opt.number(0.8, 'canonical SAE: lowest CE loss score it should reach'),
    explorer: opt.boolean(
      false,
      'also export a live feature explorer per SAE into <run>/explorer/ (linked from the report; open with saeflow-serve)',
    ),
    target_l0: opt.nullable(
      opt.number(1, 'canonical SAE: the frontier SAE with L0 closest to this (overrides the floor)', {
        min: 0,
      }),
      null,
    ),
  },
  usesTensorflowJs: (cfg) => cfg.engine !== 'onnx',
  async build(cfg, ctx) {
    const locations = findSaeFolders(cfg.sae);
    const modelSpec = modelSpecForSaes(cfg.model, locations);
    const described = await describeEvalModel(modelSpec);
    const { config: modelConfig, source } = described;
    ctx.log.info(
      `model: ${source.description}${modelSpec === cfg.model ? '' : " (the SAEs' training model)"}`,
    );
    const tokenizer = await loadTokenizer(source.dir);
    ctx.log.info(`tokenizer: ${tokenizer.description}`);
    const targets = await loadEvalTargets(locations, {
      config: modelConfig,
      name: source.name,
    });
    let disposeModel = (): void | Promise<void> => undefined;
    const release = () => {
      for (const t of targets) t.sae.dispose();
      // onnxruntime releases its sessions asynchronously; nothing needs to wait for that.
      void disposeModel()?.catch(() => undefined);
    };
    try {
      for (const t of targets) {
        const trainedOn = saeModelName(t);
        if (trainedOn !== null && trainedOn !== source.name) {
          ctx.log.warn(`SAE ${t.name} says it was trained on ${trainedOn}; evaluating it on ${source.name}`);
        }
        const hooks = t.transcoder ? `${t.hookIn.name} -> ${t.hookOut.name}` : t.hookIn.name;
        ctx.log.info(`SAE ${t.name}: ${t.config.architecture} ${hooks}, d_sae ${t.config.d_sae}`);
      }
      const { contextSize, prependBos } = resolveWindowing(
        { contextSize: cfg.context_size, prependBos: cfg.prepend_bos },
        targets,
        modelConfig,
        tokenizer.prependBos,
      );
      const excluded = cfg.exclude_special_tokens ? [...tokenizer.specialIds] : [];
      const layers = new Set(targets.flatMap((t) => (t.hookOut.layer === null ? [] : [t.hookOut.layer])));
      const { processing, mismatched } = evalProcessing(
        cfg.processing === 'auto' ? null : cfg.processing,
        targets,
      );
      for (const m of mismatched) {
        ctx.log.warn(
          `SAE ${m.name} was trained on a model with processing ${m.recorded}; evaluating it with --processing ${processing}`,
        );
      }
      if (processing !== 'none') ctx.log.info(`model weight processing: ${processing}`);
      const engine = await resolveEngine(cfg.engine, (msg) => ctx.log.info(msg));
      const { model, unembed } = await loadEvalModel(described, processing, layers, engine);
      disposeModel = () => model.dispose();

      const windows = Math.ceil(cfg.n_eval_tokens / contextSize);
      const skipWindows = Math.ceil(cfg.skip_tokens / contextSize);
      const dashboards = cfg.features.length > 0 || cfg.n_dashboard_features > 0;
      const chosenFeatures = targets.map((t) =>
        cfg.features.length > 0 ? requestedDashboardFeatures(cfg.features, t.config.d_sae, t.name) : null,
      );
      ctx.progress.setTotal(windows * contextSize * (dashboards ? 2 : 1));
      // Called once per pass: the same documents, packed the same way, give the same windows.
      const tokenBatches = () =>
        documentSource(cfg.dataset, {}, ctx.flow).pipe(
          tokenize(tokenizer),
          pack({
            contextSize,
            batchSize: cfg.batch_size,
            tokenizer,
            prependBos,
            disableConcatSequences: cfg.disable_concat_sequences,
          }),
          windowRange({ skip: skipWindows, take: windows }),
        );
      const progress = trackProgress(ctx.progress, (b: { tokens: number }) => ({ tokens: b.tokens }));

      const evaluator = new SaeEvaluator(model, targets, {
        excludeTokenIds: excluded,
        computeKl: cfg.compute_kl,
      });
      let results: SaeEvalResult[] = [];
      let contexts = new Map<string, FeatureContexts[]>();

      const firstPass = tokenBatches().pipe(
        saeEvaluation(evaluator, { flow: ctx.flow }),
        progress,
        ignoreElements(),
      );
      const secondPass = defer(() => {
        if (evaluator.tokens === 0) {
          if (ctx.flow.stopped) return EMPTY;
          const skipped = skipWindows > 0 ? ` after skipping ${skipWindows * contextSize}` : '';
          throw new UserError(`dataset ${cfg.dataset} gave no tokens to evaluate on${skipped}`);
        }
        if (evaluator.tokens < windows * contextSize && !ctx.flow.stopped) {
          ctx.log.warn(
            `the dataset ran out: evaluated on ${evaluator.tokens} tokens, not ${windows * contextSize}`,
          );
        }
        results = evaluator.results();
        for (const r of results) ctx.metrics.write('eval', { sae: r.target.name, ...r.metrics });
        if (!dashboards || ctx.flow.stopped) return EMPTY;
        const collector = new DashboardCollector(
          model,
          results.map((r, i) => ({
            target: r.target,
            features:
              chosenFeatures[targets.indexOf(r.target)] ??
              selectDashboardFeatures(r.sparsity.density, cfg.n_dashboard_features, cfg.seed + i),
            maxActivation: r.sparsity.maxActivation,
          })),
          { excludeTokenIds: excluded, decodeToken: (id) => tokenizer.decodeToken(id) },
        );
        if (collector.empty) return EMPTY;
        ctx.log.info('collecting feature dashboards (second pass over the eval tokens)');
        return tokenBatches().pipe(
          dashboardContexts(collector, { flow: ctx.flow }),
          progress,
          ignoreElements(),
          finalize(() => {
            contexts = collector.results();
          }),
        );
      });
      const outputs = defer(async () => {
        if (results.length === 0) return { tokens: 0, saes: [] };
        const created = new Date().toISOString();
        const written = await writeEvalOutputs({
          runDir: ctx.runDir,
          run: {
            name: path.basename(ctx.runDir),
            created,
            model: source.name,
            dataset: cfg.dataset,
            n_eval_tokens: evaluator.tokens,
          },
          settings: {
            model: source.name,
            dataset: cfg.dataset,
            context_size: contextSize,
            prepend_bos: prependBos,
            n_eval_tokens: evaluator.tokens,
            exclude_special_tokens: cfg.exclude_special_tokens,
            excluded_token_ids: excluded,
            created,
          },
          results,
          contexts,
          unembed,
          decodeToken: (id) => tokenizer.decodeToken(id),
          canonical: { ceScoreFloor: cfg.ce_score_floor, targetL0: cfg.target_l0 },
        });
        const explorers = cfg.explorer
          ? await exportExplorers({
              runDir: ctx.runDir,
              data: written.data,
              dashboardsSource: written.reportDataFile,
              model: modelSpec,
              processing,
              log: ctx.log,
            })
          : [];
        if (explorers.length > 0) await writeReportData(ctx.runDir, written.data);
        await renderReport(written.data, ctx.runDir);
        const report = path.join(ctx.runDir, REPORT_HTML);
        ctx.log.info(`report: ${report}`);
        return {
          report,
          report_data: written.reportDataFile,
          ...(cfg.explorer ? { explorers: explorers.map((x) => path.join(ctx.runDir, x.href)) } : {}),
          tokens: evaluator.tokens,
          canonical: written.sweep.canonical,
          saes: results.map((r) => ({
            name: r.target.name,
            eval: written.evalFiles.get(r.target.name),
            l0: r.metrics.l0,
            explained_variance: r.metrics.explained_variance,
            ce_loss_score: r.metrics.ce_loss_score,
            kl_div_score: r.metrics.kl_div_score,
            dead_features: r.metrics.dead_features,
          })),
        };
      });
      return concat(firstPass, secondPass, outputs).pipe(finalize(release));
    } catch (e) {
      release();
      throw e;
    }
  },
});
