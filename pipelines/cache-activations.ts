// Runs a model over a dataset and writes the activations at the requested hooks to a
// Parquet activation cache (manifest.json + shard-NNNNN.parquet) in the run directory.
import { map, reduce } from 'rxjs';
import { parseShard } from '../src/cluster/shard-spec.js';
import { cachePartRows, writeCachePart } from '../src/cluster/cache-parts.js';
import { WEIGHT_PROCESSINGS } from '../src/model/index.js';
import { definePipeline, opt, trackProgress, UserError } from '../src/pipeline/index.js';
import {
  cacheWriter,
  keepPlannedRows,
  openCacheForResume,
  PARQUET_COMPRESSIONS,
  selectPlannedBatches,
  summarizeStream,
  type StreamSummary,
} from '../src/stages/cache/index.js';
import {
  ENGINES,
  loadActivationEngine,
  modelActivations,
  resolveModelSource,
} from '../src/stages/model/index.js';
import { documentSource, pack, tokenize, windowRange } from '../src/stages/text/index.js';
import { loadTokenizer } from '../src/tokenizer/index.js';

export default definePipeline({
  name: 'cache-activations',
  description: 'Capture model activations at hook points into a Parquet activation cache.',
  config: {
    model: opt.string(
      'tiny-gpt2',
      'model: tiny-gpt2 (embedded), a Hugging Face directory, or a hub name like gpt2',
    ),
    dataset: opt.string(
      'moby-dick',
      'text file, directory, glob, embedded corpus, or Hugging Face dataset id',
    ),
    hooks: opt.list(['blocks.0.hook_resid_post'], 'hook names or patterns (blocks.*.hook_resid_post)'),
    context_size: opt.int(128, 'tokens per context window', { min: 2 }),
    batch_size: opt.int(16, 'context windows per model forward', { min: 1 }),
    max_tokens: opt.nullable(
      opt.int(1, 'stop after this many tokens (whole windows); none: the whole dataset', { min: 1 }),
      null,
    ),
    engine: opt.choice(
      ENGINES,
      'auto',
      'model engine: onnx (onnxruntime, ~8x faster on CPU), tfjs (TensorFlow.js), or auto (onnx where onnxruntime runs)',
    ),
    processing: opt.choice(
      WEIGHT_PROCESSINGS,
      'none',
      'weight processing (center_writing_weights as TransformerLens)',
    ),
    prepend_bos: opt.nullable(
      opt.boolean(
        true,
        "start every window with BOS (SAELens prepend_bos; default: TransformerLens's default for the model family)",
      ),
      null,
    ),
    disable_concat_sequences: opt.boolean(false, 'never join documents inside one window'),
    shuffle: opt.boolean(false, 'shuffle documents (deterministic given seed)'),
    seed: opt.int(42, 'random seed of the document shuffle', { min: 0 }),
    dtype: opt.choice(['float32', 'float16'], 'float32', 'element type of the cached activations'),
    shard_size_mb: opt.number(256, 'target shard size in MiB (uncompressed)', { min: 0.001 }),
    compression: opt.choice(PARQUET_COMPRESSIONS, 'snappy', 'Parquet compression'),
    shard: opt.nullable(
      opt.string(
        '0/1',
        'task i of n of a split run (i/n): writes shards i, i+n, ... of the single run; pipelines/merge-cache.ts joins the parts (docs/cluster.md)',
      ),
      null,
    ),
  },
  split: {
    finish: (dir) => ({ pipeline: 'pipelines/merge-cache.ts', args: ['--cache', dir] }),
  },
  usesTensorflowJs: (cfg) => cfg.engine !== 'onnx',
  async build(cfg, ctx) {
    const shard = cfg.shard === null ? { index: 0, count: 1 } : parseShard(cfg.shard);
    const source = await resolveModelSource(cfg.model);
    ctx.log.info(`model: ${source.description}`);
    const tokenizer = await loadTokenizer(source.dir);
    ctx.log.info(`tokenizer: ${tokenizer.description}`);
    const prependBos = cfg.prepend_bos ?? tokenizer.prependBos;
    const model = await loadActivationEngine(source.dir, {
      engine: cfg.engine,
      processing: cfg.processing,
      log: (m) => ctx.log.info(m),
    });
    if (cfg.context_size > model.config.nCtx) {
      throw new UserError(
        `--context_size ${cfg.context_size} exceeds the model's n_positions (${model.config.nCtx})`,
      );
    }
    const resume = openCacheForResume(ctx.runDir);
    // Rows are kept by shard-sized blocks of the whole stream: all of them in a single run, every n-th
    // block in task i of n. Whole model batches are skipped only, so every forward sees the batch an
    // uninterrupted single run gives it (kernels may round differently for other batch shapes).
    const plan = {
      ...shard,
      rowsPerBlock: cachePartRows(model.config, cfg.hooks, cfg.dtype, cfg.shard_size_mb),
      skipRows: resume.completeRows,
    };
    const maxWindows = cfg.max_tokens === null ? null : Math.ceil(cfg.max_tokens / cfg.context_size);
    if (shard.count > 1) {
      ctx.log.info(
        `task ${shard.index} of ${shard.count}: shards ${shard.index}, ${shard.index + shard.count}, ... (${plan.rowsPerBlock} tokens each) of the single run's cache`,
      );
    }
    if (resume.completeRows > 0) ctx.log.info(`resuming after ${resume.completeRows} cached tokens`);
    if (maxWindows !== null && shard.count === 1) ctx.progress.setTotal(maxWindows * cfg.context_size);
    ctx.progress.advance({ tokens: resume.completeRows });
    let stream: StreamSummary | null = null;

    return documentSource(cfg.dataset, { shuffle: cfg.shuffle, seed: cfg.seed }, ctx.flow).pipe(
      tokenize(tokenizer),
      pack({
        contextSize: cfg.context_size,
        batchSize: cfg.batch_size,
        tokenizer,
        prependBos,
        disableConcatSequences: cfg.disable_concat_sequences,
      }),
      windowRange({ take: maxWindows }),
      summarizeStream((s) => (stream = s)),
      selectPlannedBatches(plan),
      modelActivations({ model, hooks: cfg.hooks, dtype: cfg.dtype, flow: ctx.flow }),
      keepPlannedRows(plan, cfg.context_size),
      trackProgress(ctx.progress, (b) => ({ items: 1, tokens: b.numRows })),
      cacheWriter({
        dir: ctx.runDir,
        dtype: cfg.dtype,
        compression: cfg.compression,
        shardSizeMb: cfg.shard_size_mb,
        resume: ctx.resume,
        // A task may own no block at all (fewer shards than tasks): its part is then empty, not an error.
        allowEmpty: shard.count > 1,
        flow: ctx.flow,
        provenance: {
          model: source.name,
          contextSize: cfg.context_size,
          prependBos,
          dataset: cfg.dataset,
          tokenizer: tokenizer.identity,
          specialTokenIds: tokenizer.specialIds,
        },
      }),
      reduce((acc, shard) => ({ shards: shard.shard + 1, tokens: shard.totalRows }), {
        shards: resume.manifest?.shards.length ?? 0,
        tokens: resume.completeRows,
      }),
      map((written) => {
        void model.dispose();
        // A part records the stream it saw only when it saw all of it (not after a stop request).
        if (cfg.shard !== null && stream !== null && !ctx.flow.stopped) {
          writeCachePart(ctx.runDir, { ...shard, rowsPerBlock: plan.rowsPerBlock, stream });
        }
        return {
          cache: ctx.runDir,
          ...written,
          hooks: cfg.hooks,
          ...(cfg.shard === null ? {} : { shard: cfg.shard }),
        };
      }),
    );
  },
});
