export { architectureNames, architectureOf } from './architectures/registry.js';
export {
  B_DEC_INIT_METHODS,
  LR_SCHEDULERS,
  TRAINING_NORMALIZATIONS,
  isTranscoder,
  outputWidth,
  resolveSaeTrainingConfig,
  resolveSaeTrainingConfigs,
  targetHook,
  totalTrainingSteps,
} from './config.js';
export type {
  BDecInitMethod,
  LrSchedulerName,
  SaeArchitecture,
  SaeTrainingConfig,
  SaeTrainingConfigInput,
  TrainingNormalization,
} from './config.js';
export { SaeTrainer, TRAINER_MANIFEST } from './trainer.js';
export type { CheckpointPart, TrainerStepResult, TrainingBatch } from './trainer.js';
export { TrainingSae } from './training-sae.js';
export type { SaeStepMetrics } from './training-sae.js';
export type { DensityHistogram, SparsityReport } from './firing-stats.js';
export { densityHistogram, logDensity } from './firing-stats.js';
export { Sae } from './sae.js';
export {
  SAE_CFG_FILENAME,
  SAE_WEIGHTS_FILENAME,
  SPARSITY_FILENAME,
  readSaeFolder,
  saelensConfig,
  writeSaeFolder,
} from './saelens-folder.js';
export type { SaeFolder, SaeFolderConfig } from './saelens-folder.js';
export { TRAINER_STATE_FILENAME } from './trainer-state.js';
export { inferenceWeights } from './fold.js';
export type { HostTensor, InferenceWeights } from './fold.js';
export { learningRateAt, coefficientAt } from './optim/schedules.js';
