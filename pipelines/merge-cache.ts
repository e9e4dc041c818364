// The finishing step of a split cache run (cache-activations --shard i/n, or an --array N submission):
// checks every part under <cache>/parts/ and joins them into one activation cache in <cache>, shard for
// shard the cache a single run over the same data writes. See docs/cluster.md.
import { defer } from 'rxjs';
import { mergeCacheParts } from '../src/cluster/cache-parts.js';
import { definePipeline, opt, UserError } from '../src/pipeline/index.js';

export default definePipeline({
  name: 'merge-cache',
  description: 'Join the parts of a split cache-activations run into one activation cache.',
  config: {
    cache: opt.string('', 'directory of the split run: its parts/ are joined into a cache there'),
    verify_checksums: opt.boolean(true, "hash every shard against its part's manifest before joining"),
  },
  usesTensorflowJs: () => false,
  build(cfg, ctx) {
    if (cfg.cache === '') throw new UserError('--cache: give the directory of the split cache run');
    return defer(async () => {
      const merged = await mergeCacheParts(cfg.cache, {
        verifyChecksums: cfg.verify_checksums,
        log: (m) => ctx.log.info(m),
      });
      return {
        cache: merged.cache,
        parts: merged.parts,
        shards: merged.shards,
        tokens: merged.tokens,
        already_merged: merged.alreadyMerged,
      };
    });
  },
});
