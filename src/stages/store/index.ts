export { activationStore, type ActivationStoreOptions, type TrainingBatch } from './activation-store.js';
export { MixingBuffer } from './mixing-buffer.js';
export { NORMALIZE_MODES, estimateScalingFactors, type NormalizeMode } from './normalization.js';
export type { HookWidths, RowBlock } from './row-block.js';
