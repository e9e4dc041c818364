// Kept identical to the example in README.md (test/readme-example.test.ts checks both).
import { map } from 'rxjs';
import { definePipeline, opt, trackProgress } from '../../src/pipeline/index.js';
import { documentSource, pack, tokenize } from '../../src/stages/text/index.js';

export default definePipeline({
  name: 'count-windows',
  description: 'Counts GPT-2 context windows in a dataset.',
  config: {
    dataset: opt.string('moby-dick', 'file, directory, glob or embedded corpus'),
    context_size: opt.int(128, 'tokens per window', { min: 2 }),
    sae: { d_sae: opt.int(512, 'nested options become --sae.d_sae', { min: 1 }) },
  },
  build(cfg, ctx) {
    return documentSource(cfg.dataset, {}, ctx.flow).pipe(
      tokenize(),
      pack({ contextSize: cfg.context_size, batchSize: 32 }),
      trackProgress(ctx.progress, (b) => ({ tokens: b.batchSize * b.contextSize })),
      map((b) => ({ last_batch_windows: b.batchSize })),
    );
  },
});
