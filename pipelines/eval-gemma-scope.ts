// Gemma Scope's workflow: evaluate the SAEs (or transcoders) of a Gemma Scope release on Gemma 2, layer by
// layer, choose the canonical one per layer and width (the L0 closest to a target, 100 as Gemma Scope and
// SAELens chose them, among the layer's Pareto frontier of L0 against delta loss), and report the per-layer
// L0 and the decoder norms. Writes <run>/<layer_N/width_W/average_l0_K>/eval.json per SAE, gemma-scope.json
// and gemma-scope.md (the canonical table, L0 per layer, decoder norms), and the usual report (report.html,
// report.md, report-data.json) with the canonical SAEs starred.
//
// Each layer is one pass over the same eval tokens: its SAEs (every width and sparsity asked for) are loaded,
// spliced in one at a time beside one clean and one zero-ablation forward per batch, then released before
// the next layer's are loaded, so memory holds one layer's SAEs at a time.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { concat, concatMap, defer, EMPTY, finalize, from, ignoreElements } from 'rxjs';
import {
  ModelEvalEngine,
  SaeEvaluator,
  buildReportData,
  loadEvalTargets,
  resolveWindowing,
  saeEvaluation,
  saeModelName,
  summarizeSweep,
  sweepPointOf,
  writeEvalJson,
  writeReportData,
} from '../src/eval/index.js';
import type { EvalSettings, EvalTarget, SaeEvalResult, SaeLocation } from '../src/eval/index.js';
import { buildScopeReport, scopeSaeRecord, writeScopeReport } from '../src/eval/gemma-scope-report.js';
import type { ScopeSaeRecord } from '../src/eval/gemma-scope-report.js';
import {
  FRONTIER_METRICS,
  L0_SOURCES,
  chooseNearestL0ByGroup,
  nearestL0Rule,
} from '../src/eval/nearest-l0.js';
import { ENGINES, createRunner, resolveEngine } from '../src/engine/engines.js';
import { isHubOffline } from '../src/hub/env.js';
import { loadModel, readModelConfig } from '../src/model/index.js';
import type { ModelRunner } from '../src/model/index.js';
import { definePipeline, opt, trackProgress, UserError } from '../src/pipeline/index.js';
import { renderReport, REPORT_HTML } from '../src/report/index.js';
import { resolveModelSource } from '../src/stages/model/index.js';
import {
  gemmaScopeGroup,
  gemmaScopeRelease,
  gemmaScopeReleaseNames,
  listGemmaScopeFolder,
  releaseCandidates,
  saelensCanonical,
  selectIds,
} from '../src/sae-formats/gemma-scope-release.js';
import type { GemmaScopeId } from '../src/sae-formats/gemma-scope-release.js';
import { GEMMA_SCOPE_FILES } from '../src/sae-formats/gemma-scope.js';
import { documentSource, pack, tokenize, windowRange } from '../src/stages/text/index.js';
import { loadTokenizer } from '../src/tokenizer/index.js';

export default definePipeline({
  name: 'eval-gemma-scope',
  description:
    "Evaluate a Gemma Scope release's SAEs layer by layer on Gemma 2, choose the canonical SAE per layer (L0 nearest a target on the Pareto frontier), and report L0 per layer and decoder norms.",
  config: {
    model: opt.string(
      'google/gemma-2-2b',
      'Gemma 2 model: a directory, or a hub name found in the Hugging Face cache (one model.safetensors or its shards) or downloaded into it when allowed',
    ),
    release: opt.string(
      'gemma-scope-2b-pt-res',
      'Gemma Scope release (SAELens name: gemma-scope-2b-pt-res, -mlp, -att, -transcoders, gemma-scope-9b-pt-res, ...); its SAEs come from the Hugging Face cache or the hub unless --folder is given',
    ),
    folder: opt.nullable(
      opt.string(
        '',
        "a local copy of the release's SAEs, laid out like its repository (layer_N/width_W/average_l0_K/params.npz or params.safetensors)",
      ),
      null,
    ),
    layers: opt.numberList([], 'layers to evaluate, e.g. 5,12,19 (default: every layer of the model)', {
      min: 0,
    }),
    widths: opt.list(['16k'], 'SAE widths (the width_W folders: 16k, 65k, 131k, 1m, ...); empty for all'),
    target_l0: opt.number(100, 'canonical SAE: the L0 it should be nearest (Gemma Scope chose 100)', {
      min: 0,
    }),
    l0_source: opt.choice(
      L0_SOURCES,
      'auto',
      "L0 the distance to target_l0 is taken on: release (the folder's average_l0_K, as SAELens's canonical lists), measured (this evaluation's), auto (release where every frontier SAE has one)",
    ),
    frontier: opt.choice(
      FRONTIER_METRICS,
      'delta_loss',
      'canonical SAE: only SAEs on the Pareto frontier of measured L0 against this (lower is better) compete; none: all do',
    ),
    decoder_norm_tolerance: opt.number(1e-3, 'flag SAEs with a decoder row whose norm is off 1 by more', {
      min: 0,
    }),
    dataset: opt.string(
      'sotu',
      "eval data: file, directory, glob, embedded corpus or HF dataset id (text is tokenized with the model's own tokenizer.json)",
    ),
    engine: opt.choice(ENGINES, 'auto', 'model engine: onnx, tfjs, or auto (onnx where onnxruntime runs)'),
    context_size: opt.nullable(
      opt.int(
        128,
        "tokens per context window (default: the SAEs' context_size if the model takes it, else 128)",
        {
          min: 2,
        },
      ),
      null,
    ),
    prepend_bos: opt.nullable(
      opt.boolean(true, 'start every window with BOS (default: as the SAEs were trained, else true)'),
      null,
    ),
    disable_concat_sequences: opt.boolean(false, 'never join documents inside one window'),
    n_eval_tokens: opt.int(4096, 'tokens to evaluate every SAE on (rounded up to whole windows)', { min: 1 }),
    skip_tokens: opt.int(0, 'skip this many dataset tokens first (whole windows)', { min: 0 }),
    batch_size: opt.int(4, 'context windows per model forward', { min: 1 }),
    exclude_special_tokens: opt.boolean(
      true,
      "leave the tokenizer's special tokens (BOS/EOS/pad) out of every metric",
    ),
    compute_kl: opt.boolean(true, 'KL divergence metrics'),
  },
  usesTensorflowJs: (cfg) => cfg.engine !== 'onnx',
  async build(cfg, ctx) {
    const release = gemmaScopeRelease(cfg.release);
    const source = await resolveModelSource(cfg.model, process.cwd(), (m) => ctx.log.info(m));
    const config = await readModelConfig(source.dir);
    ctx.log.info(`model: ${source.description} (${config.family}, ${config.nLayers} layers)`);
    const tokenizer = await loadTokenizer(source.dir);
    ctx.log.info(`tokenizer: ${tokenizer.description}`);

    // The candidates: a local copy of the release, or the release's SAEs (SAELens's list and the cache's).
    let ids: GemmaScopeId[];
    let cached: Set<string> | null = null;
    const folder = cfg.folder === null || cfg.folder === '' ? null : path.resolve(cfg.folder);
    if (folder !== null) {
      if (!existsSync(folder)) throw new UserError(`--folder ${cfg.folder}: ${folder} does not exist`);
      // The release says which hooks the SAEs read: a copy whose path names another release is a mistake.
      const named = /gemma-scope-(?:2b|9b|27b)-(?:pt|it)-(?:res|mlp|att|transcoders)(?![a-z-])/.exec(
        folder,
      )?.[0];
      if (named !== undefined && named !== release.name && gemmaScopeReleaseNames().includes(named)) {
        throw new UserError(
          `--folder ${cfg.folder} looks like a copy of ${named}, but --release is ${release.name} (which decides the SAEs' hooks); pass --release ${named}`,
        );
      }
      ids = listGemmaScopeFolder(folder);
      if (ids.length === 0) {
        throw new UserError(
          `--folder ${cfg.folder}: no layer_N/width_W/average_l0_K folder with ${GEMMA_SCOPE_FILES.join(' or ')} in ${folder}`,
        );
      }
    } else {
      const found = await releaseCandidates(release);
      ids = found.ids;
      cached = found.cached;
    }
    const layers = cfg.layers.length > 0 ? cfg.layers : Array.from({ length: config.nLayers }, (_, i) => i);
    const beyond = layers.filter((l) => l >= config.nLayers);
    if (beyond.length > 0) {
      throw new UserError(`--layers ${beyond.join(',')}: the model has layers 0..${config.nLayers - 1}`);
    }
    let chosenIds = selectIds(ids, layers, cfg.widths);
    if (cached !== null && isHubOffline()) {
      const missing = chosenIds.filter((i) => !cached.has(i.id));
      if (missing.length > 0) {
        ctx.log.warn(
          `HF_HUB_OFFLINE is set: leaving out ${missing.length} SAE(s) the Hugging Face cache lacks (${missing
            .slice(0, 5)
            .map((i) => i.id)
            .join(', ')}${missing.length > 5 ? ', ...' : ''})`,
        );
        chosenIds = chosenIds.filter((i) => cached.has(i.id));
      }
    }
    if (chosenIds.length === 0) {
      const have = [...new Set(ids.map((i) => gemmaScopeGroup(i)))];
      throw new UserError(
        `no SAE of ${folder ?? release.name} at layers ${layers.join(',')} and widths ${cfg.widths.join(',') || 'any'}` +
          ` (it has: ${have.slice(0, 12).join(', ')}${have.length > 12 ? `, ... (${have.length} in all)` : ''})`,
      );
    }
    const byLayer = new Map<number, GemmaScopeId[]>();
    for (const id of chosenIds) byLayer.set(id.layer, [...(byLayer.get(id.layer) ?? []), id]);
    ctx.log.info(
      `${chosenIds.length} SAE(s) of ${release.name}${folder ? ` (from ${folder})` : ''} at ${byLayer.size} layer(s), widths ${[
        ...new Set(chosenIds.map((i) => i.width)),
      ].join(', ')}`,
    );

    const idOf = new Map(chosenIds.map((i) => [i.id, i]));
    const locationOf = (id: GemmaScopeId): SaeLocation => {
      let file = `${release.name}/${id.id}`;
      if (folder !== null) {
        const dir = path.join(folder, ...id.id.split('/'));
        file = GEMMA_SCOPE_FILES.map((f) => path.join(dir, f)).find((f) => existsSync(f))!;
      }
      return { name: id.id, folderName: id.id, path: file };
    };
    // A local copy's path need not name the repository: the release tells the model and hooks.
    const loadOptions = (loc: SaeLocation) => ({ location: `${release.repoId}/${loc.name}` });
    const loadLayer = async (layerIds: readonly GemmaScopeId[]): Promise<EvalTarget[]> => {
      const targets = await loadEvalTargets(
        layerIds.map(locationOf),
        { config, name: source.name },
        loadOptions,
      );
      for (const t of targets) t.group = gemmaScopeGroup(idOf.get(t.name)!);
      return targets;
    };

    const engine = await resolveEngine(cfg.engine, (msg) => ctx.log.info(msg));
    // The first layer's SAEs also say how they were trained (context size, BOS) before any model weights load.
    const layerList = [...byLayer.entries()].sort(([a], [b]) => a - b);
    let pending: EvalTarget[] | null = await loadLayer(layerList[0]![1]);
    const firstTargets = pending;
    const { contextSize, prependBos } = resolveWindowing(
      { contextSize: cfg.context_size, prependBos: cfg.prepend_bos },
      firstTargets,
      config,
      tokenizer.prependBos,
    );
    const trainedOn = saeModelName(firstTargets[0]!);
    if (trainedOn !== null && !source.name.endsWith(trainedOn)) {
      ctx.log.warn(`${release.name} was trained on ${trainedOn}; evaluating it on ${source.name}`);
    }
    const model = await (async () => {
      try {
        return await loadModel(source.dir, { processing: 'none', config });
      } catch (e) {
        for (const t of firstTargets) t.sae.dispose();
        throw e;
      }
    })();

    const excluded = cfg.exclude_special_tokens ? [...tokenizer.specialIds] : [];
    const windows = Math.ceil(cfg.n_eval_tokens / contextSize);
    const skipWindows = Math.ceil(cfg.skip_tokens / contextSize);
    ctx.progress.setTotal(layerList.length * windows * contextSize);
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
    const settings = (tokens: number): EvalSettings => ({
      model: source.name,
      dataset: cfg.dataset,
      context_size: contextSize,
      prepend_bos: prependBos,
      n_eval_tokens: tokens,
      exclude_special_tokens: cfg.exclude_special_tokens,
      excluded_token_ids: excluded,
      created: new Date().toISOString(),
    });

    const records: ScopeSaeRecord[] = [];
    const kept: SaeEvalResult[] = [];
    let evalTokens = 0;
    const noWeights = { shape: [0, 0], data: new Float32Array(0) };

    // One pass per layer: its SAEs loaded (the first layer's already are), evaluated, written, released.
    const layerPass = ([layer, layerIds]: [number, GemmaScopeId[]]) =>
      defer(async () => {
        if (ctx.flow.stopped) return null;
        const targets = pending ?? (await loadLayer(layerIds));
        pending = null;
        let runner: ModelRunner;
        try {
          runner = await createRunner(model, engine);
        } catch (e) {
          for (const t of targets) t.sae.dispose();
          throw e;
        }
        ctx.log.info(`layer ${layer}: ${targets.map((t) => t.name).join(', ')}`);
        return { targets, runner };
      }).pipe(
        concatMap((state) => {
          if (state === null) return EMPTY;
          const { targets, runner } = state;
          const evaluator = new SaeEvaluator(new ModelEvalEngine(runner), targets, {
            excludeTokenIds: excluded,
            computeKl: cfg.compute_kl,
          });
          const release_ = async () => {
            for (const t of targets) t.sae.dispose();
            await runner.dispose();
          };
          const finish = defer(async () => {
            try {
              if (evaluator.tokens === 0) {
                if (ctx.flow.stopped) return;
                throw new UserError(`dataset ${cfg.dataset} gave no tokens to evaluate on`);
              }
              if (ctx.flow.stopped && evaluator.tokens < windows * contextSize) return; // a partial layer is not reported
              evalTokens = evaluator.tokens;
              for (const r of evaluator.results()) {
                const id = idOf.get(r.target.name)!;
                const evalFile = await writeEvalJson(ctx.runDir, r, settings(evaluator.tokens));
                const record = scopeSaeRecord(
                  r,
                  {
                    id: id.id,
                    group: gemmaScopeGroup(id),
                    layer: id.layer,
                    width: id.width,
                    releaseL0: id.averageL0,
                  },
                  evalFile,
                  cfg.decoder_norm_tolerance,
                );
                records.push(record);
                ctx.metrics.write('eval', {
                  sae: id.id,
                  ...record.metrics,
                  decoder_norm: record.decoder_norm,
                });
                // Keep the numbers for the report, not the weights.
                kept.push({ ...r, target: { ...r.target, tensors: {}, decoder: noWeights } });
              }
            } finally {
              await release_();
            }
          });
          return concat(
            tokenBatches().pipe(saeEvaluation(evaluator, { flow: ctx.flow }), progress, ignoreElements()),
            finish.pipe(ignoreElements()),
          );
        }),
      );

    const outputs = defer(async () => {
      if (records.length === 0) return { tokens: 0, canonical: [] };
      const options = { targetL0: cfg.target_l0, frontier: cfg.frontier, l0Source: cfg.l0_source };
      const choices = chooseNearestL0ByGroup(
        records.map((s) => ({
          name: s.name,
          group: s.group,
          l0: s.metrics.l0,
          releaseL0: s.release_l0,
          deltaLoss: s.metrics.delta_loss,
          fvu: s.metrics.fvu,
        })),
        options,
      );
      const rule = nearestL0Rule(options);
      const run = {
        name: path.basename(ctx.runDir),
        created: new Date().toISOString(),
        model: source.name,
        release: release.name,
        saes_from: folder ?? `${release.repoId} (Hugging Face cache or hub)`,
        dataset: cfg.dataset,
        n_eval_tokens: evalTokens,
      };
      const report = buildScopeReport({
        run,
        rule,
        options,
        decoderNormTolerance: cfg.decoder_norm_tolerance,
        saes: records,
        choices,
        saelens: saelensCanonical(release.name),
      });
      const written = await writeScopeReport(ctx.runDir, report);
      // The usual report: frontiers within each layer and width, the canonical SAEs as chosen above.
      const sweep = summarizeSweep(kept.map(sweepPointOf), { ceScoreFloor: 0 });
      sweep.canonical = Object.fromEntries(
        choices.flatMap((c) => (c.chosen === null ? [] : [[c.group, c.chosen]])),
      );
      sweep.rule = `${rule}. Frontiers are computed within each layer and width.`;
      const data = buildReportData({
        run: {
          name: run.name,
          created: run.created,
          model: run.model,
          dataset: run.dataset,
          n_eval_tokens: evalTokens,
        },
        results: kept,
        curves: new Map(),
        sweep,
        dashboards: [],
      });
      const reportData = await writeReportData(ctx.runDir, data);
      await renderReport(data, ctx.runDir);
      for (const name of report.non_unit_decoders) {
        ctx.log.warn(
          `SAE ${name}: decoder rows are not unit norm (|norm - 1| > ${cfg.decoder_norm_tolerance})`,
        );
      }
      ctx.log.info(`report: ${path.join(ctx.runDir, REPORT_HTML)} and ${written.markdown}`);
      return {
        report: path.join(ctx.runDir, REPORT_HTML),
        gemma_scope: written.json,
        report_data: reportData,
        tokens: evalTokens,
        canonical: report.canonical.map((r) => ({ group: r.group, chosen: r.chosen, l0: r.l0 })),
        non_unit_decoders: report.non_unit_decoders,
      };
    });

    const releaseAll = () => {
      for (const t of pending ?? []) t.sae.dispose();
      pending = null;
    };
    return concat(from(layerList).pipe(concatMap(layerPass)), outputs).pipe(finalize(releaseAll));
  },
});
