// Prints what a published or trained SAE is, without running it on data: its configuration, the weight
// statistics (decoder norms and their deviation from 1, encoder norms, encoder-decoder cosine), feature
// densities from sparsity.safetensors, and L0 etc. from an eval.json next to it. Any format convert-sae reads.
import { defer } from 'rxjs';
import { definePipeline, opt, UserError } from '../src/pipeline/index.js';
import { loadSae } from '../src/sae-formats/index.js';
import { describeInspection, inspectSae } from '../src/sae-formats/inspect.js';

export default definePipeline({
  name: 'inspect-sae',
  description: "Show an SAE's configuration and weight statistics (any format convert-sae reads).",
  config: {
    sae: opt.string('', 'SAE: a folder or file, RELEASE/SAE_ID or ORG/REPO/FOLDER'),
    hook_name: opt.nullable(opt.string('', 'hook to record, when the source does not say'), null),
    revision: opt.string('main', 'branch, tag or commit of a hub repository'),
    allow_download: opt.boolean(true, 'download from the Hugging Face hub what the cache lacks'),
    per_feature: opt.boolean(false, 'include per-feature norms and cosines in result.json'),
  },
  build(cfg, ctx) {
    return defer(async () => {
      if (cfg.sae === '')
        throw new UserError('--sae is required (a folder, a file, RELEASE/SAE_ID or ORG/REPO/FOLDER)');
      const loaded = await loadSae(cfg.sae, {
        revision: cfg.revision,
        allowDownload: cfg.allow_download,
        hookName: cfg.hook_name ?? undefined,
      });
      const report = await inspectSae(loaded, { perFeature: cfg.per_feature });
      for (const line of describeInspection(report)) ctx.log.info(line);
      return report;
    });
  },
});
