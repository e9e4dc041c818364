/**
 * Loading, converting and using the SAE formats researchers publish: SAELens folders (6.x and the older
 * flat configs), Gemma Scope (`params.npz`), EleutherAI sparsify folders, and transcoders, all into the
 * in-memory SAE of src/sae; a small registry of well-known releases resolved through the Hugging Face cache.
 *
 *   const loaded = await loadSae('gpt2-small-res-jb/blocks.8.hook_resid_pre');   // or a folder / .npz
 *   await saveAsSaelens(loaded, 'out/sae');
 *   const model = await loadTfjsModel(dir, { processing: loaded.requiredProcessing });   // or an OnnxRunner
 *   await model.runWithHooks(tokens, { interventions: saeInterventions(loaded, model), returnLoss: true });
 */
export { saeInterventions } from './intervention.js';
export type { HookedModel, SaeInterventionOptions } from './intervention.js';
export { saelensConfigOf, saveAsSaelens } from './convert.js';
export { detectSaeFormat, layoutFor, layoutOf } from './detect.js';
export type { DetectedSae, FolderFormat, FolderLayout } from './detect.js';
export { gemmaScopeSite, loadGemmaScope, GEMMA_SCOPE_FILES } from './gemma-scope.js';
export type { GemmaScopeOptions, GemmaScopeSite } from './gemma-scope.js';
export { loadDetectedSae, loadSae, toSae } from './load.js';
export type { LoadDetectedOptions, LoadSaeOptions } from './load.js';
export { parseNpy } from './npy.js';
export { listNpz, readNpz } from './npz.js';
export { findRelease, releaseEntry, SAE_RELEASES } from './releases.js';
export type { SaeRelease, SaeReleaseEntry } from './releases.js';
export { resolveSae } from './resolve.js';
export type { ResolvedSae, ResolveSaeOptions } from './resolve.js';
export {
  foldNormScalingFactor,
  isLegacySaelensConfig,
  legacyToV6Config,
  loadSaelensFolder,
  saelensVersionOf,
} from './saelens.js';
export type { SaelensLoadOptions } from './saelens.js';
export {
  hooksForHookpoint,
  loadSparsify,
  SPARSIFY_CFG_FILENAME,
  SPARSIFY_WEIGHTS_FILENAME,
} from './sparsify.js';
export type { HookpointHooks, SparsifyOptions } from './sparsify.js';
export { requiredProcessingOf, SAE_FORMATS } from './types.js';
export type { LoadedSae, ReleaseRef, SaeFormat } from './types.js';
export { crc32, openZip } from './zip.js';
export type { ZipArchive, ZipEntry } from './zip.js';
