export { hfEndpoint, hfHome, hfHubCache, hfToken, isHubOffline, DEFAULT_ENDPOINT, type Env } from './env.js';
export {
  cachedSnapshot,
  COMMIT_HASH,
  isRepoId,
  listSnapshotFiles,
  repoCacheDir,
  repoFolderName,
  type CachedSnapshot,
  type RepoType,
} from './cache.js';
export {
  downloadToCache,
  fetchFileMetadata,
  hubClient,
  HubUnreachableError,
  resolveUrl,
  type CachedDownload,
  type DownloadProgress,
  type FileMetadata,
  type HubClient,
  type ProgressCallback,
} from './download.js';
export {
  MODEL_ALIASES,
  modelRepoCandidates,
  resolveModel,
  resolveModelDir,
  type ResolvedModel,
  type ResolveModelOptions,
} from './models.js';
export {
  listRepoTree,
  PARQUET_CONVERSION_REVISION,
  resolveDatasetFiles,
  type RepoTreeEntry,
  type ResolvedDataset,
  type ResolveDatasetOptions,
} from './datasets.js';
export { sha256File } from '../io/sha256.js';
