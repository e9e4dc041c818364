// Trains MLP transcoders: from the MLP's input (blocks.L.ln2.hook_normalized) to its output
// (blocks.L.hook_mlp_out), optionally with a linear skip connection. SAELens cannot train these.
// The flow is gpt2-resid.ts's, reading two hooks per SAE.
import { checkSweepSplit } from '../src/cluster/sweep-parts.js';
import { definePipeline, opt } from '../src/pipeline/index.js';
import { trainingOptions } from '../src/stages/train/index.js';
import { SAELENS_TRANSCODER_NAMES } from '../src/stages/train/saelens-names.js';
import { trainSaes } from './gpt2-resid.js';

export default definePipeline({
  name: 'gpt2-transcoder',
  description: 'Train MLP transcoders (ln2.hook_normalized -> hook_mlp_out) on GPT-2 activations.',
  config: {
    ...trainingOptions,
    skip_connection: opt.boolean(false, 'add a linear skip connection W_skip'),
  },
  foreignNames: SAELENS_TRANSCODER_NAMES,
  split: {
    finish(dir, cfg, count) {
      checkSweepSplit(count, Math.max(cfg.saes.length, 1), `--array ${count}`);
      return { pipeline: 'pipelines/gather-sweep.ts', args: ['--sweep', dir] };
    },
  },
  usesTensorflowJs: (cfg) => cfg.engine === 'tfjs',
  build(cfg, ctx) {
    return trainSaes(cfg, ctx, {
      hooks: (layer) => ({
        hook_name: `blocks.${layer}.ln2.hook_normalized`,
        hook_name_out: `blocks.${layer}.hook_mlp_out`,
      }),
      extra: { skip_connection: cfg.skip_connection },
    });
  },
});
