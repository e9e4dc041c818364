// Trains sparse autoencoders on a residual-stream hook of GPT-2 (or the embedded tiny-gpt2 offline),
// from a live model stream or an activation cache (--activations). A sweep (--saes '[{...}, ...]')
// trains several SAEs from one stream. SAELens folders land in <run>/saes/<name>/.
import { defer, mergeMap } from 'rxjs';
import { definePipeline, opt, UserError } from '../src/pipeline/index.js';
import { SAELENS_RUNNER_NAMES } from '../src/stages/train/saelens-names.js';
import { buildTraining, trainingOptions } from '../src/stages/train/training-pipeline.js';

export default definePipeline({
  name: 'gpt2-resid',
  description: 'Train residual-stream SAEs (SAELens options) on GPT-2 activations.',
  config: {
    ...trainingOptions,
    hook: opt.nullable(opt.string('', 'hook name (default blocks.<layer>.hook_resid_pre)'), null),
    hook_name: opt.nullable(opt.string('', 'same as --hook (SAELens name)'), null),
  },
  foreignNames: SAELENS_RUNNER_NAMES,
  usesTensorflowJs: (cfg) => cfg.engine !== 'onnx',
  build(cfg, ctx) {
    if (cfg.hook !== null && cfg.hook_name !== null && cfg.hook !== cfg.hook_name) {
      throw new UserError(`--hook ${cfg.hook} and --hook_name ${cfg.hook_name} disagree; give one of them`);
    }
    const hook = cfg.hook ?? cfg.hook_name;
    return defer(() =>
      buildTraining(cfg, ctx, {
        hooks: (layer) => ({ hook_name: hook ?? `blocks.${layer}.hook_resid_pre` }),
      }),
    ).pipe(mergeMap((stream) => stream));
  },
});
