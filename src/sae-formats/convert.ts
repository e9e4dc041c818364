/**
 * Writing any loaded SAE as a SAELens 6 folder (what `Sae.load`, `readSaeFolder` and SAELens's
 * `SAE.load_from_disk` read): float32 tensors in SAELens's names and layouts, a 6.x cfg.json whose
 * metadata records where the SAE came from.
 */
import { writeSaeFolder, SAEFLOW_VERSION, SAELENS_LAYOUT_VERSION } from '../sae/saelens-folder.js';
import type { SaeFolderConfig } from '../sae/saelens-folder.js';
import type { LoadedSae } from './types.js';

/** The cfg.json a loaded SAE is saved with. */
export function saelensConfigOf(loaded: LoadedSae): SaeFolderConfig {
  const from: Record<string, unknown> = { format: loaded.format };
  if (loaded.release) {
    from.release = loaded.release.release;
    from.sae_id = loaded.release.saeId;
    from.repo_id = loaded.release.repoId;
    if (loaded.release.commit) from.commit = loaded.release.commit;
  }
  const metadata = { ...loaded.config.metadata };
  // The folder is now in SAELens 6's layout whatever version trained it.
  if (metadata.sae_lens_version !== undefined && metadata.sae_lens_training_version === undefined) {
    metadata.sae_lens_training_version = metadata.sae_lens_version;
  }
  metadata.sae_lens_version = SAELENS_LAYOUT_VERSION;
  metadata.saeflow_version = SAEFLOW_VERSION;
  metadata.converted_from = from;
  return { ...loaded.config, dtype: 'float32', metadata };
}

/** Writes `loaded` as a SAELens folder at `dir` (atomically: a temporary sibling, then a rename). */
export async function saveAsSaelens(loaded: LoadedSae, dir: string): Promise<SaeFolderConfig> {
  const config = saelensConfigOf(loaded);
  await writeSaeFolder(
    dir,
    config,
    { architecture: config.architecture, tensors: loaded.tensors },
    loaded.sparsity,
  );
  return config;
}
