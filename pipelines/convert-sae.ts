// Converts a published SAE (SAELens folder of any version, Gemma Scope params.npz, sparsify folder, or a
// release such as gpt2-small-res-jb/blocks.8.hook_resid_pre) into a SAELens 6 folder inside the run
// directory (<run>/<name>/), checks that it reads back with identical tensors, and prints its path.
import { defer } from 'rxjs';
import path from 'node:path';
import { definePipeline, opt, UserError } from '../src/pipeline/index.js';
import { readSaeFolder } from '../src/sae/index.js';
import { loadSae, saveAsSaelens } from '../src/sae-formats/index.js';
import type { LoadedSae } from '../src/sae-formats/index.js';
import type { HostTensor } from '../src/sae/index.js';

function sameTensors(a: Record<string, HostTensor>, b: Record<string, HostTensor>): string | undefined {
  const names = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const n of names) {
    const x = a[n];
    const y = b[n];
    if (!x || !y) return `tensor '${n}' is only on one side`;
    if (x.shape.join(',') !== y.shape.join(',')) return `tensor '${n}' changed shape`;
    for (let i = 0; i < x.data.length; i++) {
      if (!Object.is(x.data[i], y.data[i])) return `tensor '${n}' differs at flat index ${i}`;
    }
  }
  return undefined;
}

export default definePipeline({
  name: 'convert-sae',
  description: 'Convert a published SAE (SAELens, Gemma Scope, sparsify, or a release) to a SAELens folder.',
  config: {
    sae: opt.string(
      '',
      'SAE: a folder or file, RELEASE/SAE_ID (gpt2-small-res-jb/blocks.8.hook_resid_pre) or ORG/REPO/FOLDER',
    ),
    name: opt.string('sae', 'folder inside the run directory to write the SAELens SAE to'),
    hook_name: opt.nullable(
      opt.string('', 'hook to record, when the source does not say (or to override it)'),
      null,
    ),
    revision: opt.string('main', 'branch, tag or commit of a hub repository'),
    allow_download: opt.boolean(true, 'download from the Hugging Face hub what the cache lacks'),
  },
  build(cfg, ctx) {
    return defer(async () => {
      if (cfg.sae === '')
        throw new UserError('--sae is required (a folder, a file, RELEASE/SAE_ID or ORG/REPO/FOLDER)');
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(cfg.name)) {
        throw new UserError(
          `--name ${JSON.stringify(cfg.name)} must be a plain folder name (letters, digits, . _ -)`,
        );
      }
      const loaded: LoadedSae = await loadSae(cfg.sae, {
        revision: cfg.revision,
        allowDownload: cfg.allow_download,
        hookName: cfg.hook_name ?? undefined,
      });
      ctx.log.info(`read ${loaded.format} SAE from ${loaded.source}`);
      for (const note of loaded.notes) ctx.log.info(`note: ${note}`);
      const out = path.join(ctx.runDir, cfg.name);
      const config = await saveAsSaelens(loaded, out);
      const back = await readSaeFolder(out);
      const problem = sameTensors(loaded.tensors, back.tensors);
      if (problem)
        throw new Error(`the written SAELens folder ${out} does not read back identically: ${problem}`);
      ctx.log.info(`wrote SAELens folder ${out}`);
      return {
        path: out,
        source: loaded.source,
        format: loaded.format,
        release: loaded.release ?? null,
        architecture: config.architecture,
        d_in: config.d_in,
        d_sae: config.d_sae,
        ...(config.d_out !== undefined ? { d_out: config.d_out } : {}),
        hook_name: config.metadata.hook_name ?? null,
        ...(config.metadata.hook_name_out !== undefined
          ? { hook_name_out: config.metadata.hook_name_out }
          : {}),
        required_processing: loaded.requiredProcessing,
        tensors: Object.keys(loaded.tensors),
        notes: loaded.notes,
      };
    });
  },
});
