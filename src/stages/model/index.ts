export { modelActivations, type ModelActivationsOptions } from './model-activations.js';
export {
  EMBEDDED_MODEL_DIR,
  EMBEDDED_MODEL_NAME,
  resolveModelSource,
  type ResolvedModelSource,
} from './resolve-model.js';
export { modelLoss, type LossBatch, type ModelLossOptions } from './model-loss.js';
export {
  ENGINES,
  loadActivationEngine,
  type ActivationEngine,
  type EngineName,
} from './activation-engine.js';
