// The finishing step of a split sweep (gpt2-resid or gpt2-transcoder with --shard i/n, or an --array N
// submission): checks that every task under <sweep>/parts/ finished and saved its SAEs, then evaluates the
// whole sweep together as eval-sae does (Pareto frontier, canonical SAE, one report listing every SAE).
// See docs/cluster.md.
import { defer, map, mergeMap, of } from 'rxjs';
import { gatherSweep } from '../src/cluster/sweep-parts.js';
import { definePipeline, opt, UserError } from '../src/pipeline/index.js';
import evalSae from './eval-sae.js';

const { sae: _sae, ...evalOptions } = evalSae.config;

export default definePipeline({
  name: 'gather-sweep',
  description: 'Check the parts of a split SAE sweep and evaluate all of its SAEs into one report.',
  config: {
    sweep: opt.string('', 'directory of the split sweep: the SAEs of its parts/ are gathered'),
    evaluate: opt.boolean(true, 'evaluate the SAEs into one report (else only check and list them)'),
    ...evalOptions,
  },
  usesTensorflowJs: (cfg) => cfg.evaluate && cfg.engine !== 'onnx',
  build(cfg, ctx) {
    if (cfg.sweep === '') throw new UserError('--sweep: give the directory of the split sweep');
    const gathered = gatherSweep(cfg.sweep, 'pipelines/gpt2-resid.ts');
    ctx.log.info(
      `${gathered.saes.length} SAEs from ${gathered.parts} parts: ${gathered.saes.map((s) => s.name).join(', ')}`,
    );
    const listed = {
      sweep: cfg.sweep,
      parts: gathered.parts,
      saes: gathered.saes.map((s) => ({ name: s.name, folder: s.folder, part: s.part })),
    };
    if (!cfg.evaluate) return of(listed);
    const { sweep: _sweep, evaluate: _evaluate, ...evalCfg } = cfg;
    return defer(async () =>
      evalSae.build({ ...evalCfg, sae: gathered.saes.map((s) => s.folder) }, ctx),
    ).pipe(
      mergeMap((evaluation) => evaluation),
      map((result) => ({ ...listed, evaluation: result })),
    );
  },
});
