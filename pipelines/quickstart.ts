// The offline quickstart: the embedded corpus -> GPT-2 tokens -> context windows.
// Later stages (model activations, SAE training, evaluation) extend this file as they land.
import { map, reduce, tap } from 'rxjs';
import { definePipeline, opt, trackProgress } from '../src/pipeline/index.js';
import { documentSource, pack, tokenize, type TokenDocument } from '../src/stages/text/index.js';

export default definePipeline({
  name: 'quickstart',
  description: 'Tokenize and pack the embedded Moby-Dick corpus into GPT-2 context windows (offline).',
  config: {
    dataset: opt.string('moby-dick', 'text file, directory, glob, or embedded corpus (moby-dick, sotu)'),
    context_size: opt.int(128, 'tokens per context window', { min: 2 }),
    batch_size: opt.int(32, 'context windows per batch', { min: 1 }),
    prepend_bos: opt.boolean(true, 'start every window with BOS (SAELens prepend_bos)'),
    disable_concat_sequences: opt.boolean(false, 'never join documents inside one window'),
    shuffle: opt.boolean(false, 'shuffle documents (deterministic given seed)'),
    seed: opt.int(42, 'random seed', { min: 0 }),
  },
  build(cfg, ctx) {
    let documents = 0;
    let documentTokens = 0;
    return documentSource(cfg.dataset, { shuffle: cfg.shuffle, seed: cfg.seed }, ctx.flow).pipe(
      tokenize(),
      tap((doc: TokenDocument) => {
        documents++;
        documentTokens += doc.tokens.length;
      }),
      pack({
        contextSize: cfg.context_size,
        batchSize: cfg.batch_size,
        prependBos: cfg.prepend_bos,
        disableConcatSequences: cfg.disable_concat_sequences,
      }),
      trackProgress(ctx.progress, (b) => ({ items: 1, tokens: b.batchSize * b.contextSize })),
      reduce(
        (acc, b) => ({
          windows: acc.windows + b.batchSize,
          tokens: acc.tokens + b.batchSize * b.contextSize,
        }),
        {
          windows: 0,
          tokens: 0,
        },
      ),
      map((packed) => {
        ctx.log.info(
          `${documents} documents, ${documentTokens} GPT-2 tokens -> ${packed.windows} windows of ${cfg.context_size} tokens`,
        );
        return {
          documents,
          document_tokens: documentTokens,
          windows: packed.windows,
          window_tokens: packed.tokens,
        };
      }),
    );
  },
});
