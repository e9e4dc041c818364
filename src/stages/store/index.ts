export {
  activationStore,
  StoreTracker,
  type ActivationStoreOptions,
  type StoreSnapshot,
  type TrainingBatch,
} from './activation-store.js';
export { MixingBuffer } from './mixing-buffer.js';
export { NORMALIZE_MODES, estimateScalingFactors, type NormalizeMode } from './normalization.js';
export {
  readStoreSnapshot,
  STORE_SNAPSHOT_FILE,
  storeCheckpointPart,
  writeStoreSnapshotSync,
} from './store-snapshot-file.js';
export type { HookWidths, RowBlock } from './row-block.js';
