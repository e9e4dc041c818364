export { modelActivations, type ModelActivationsOptions } from './model-activations.js';
export {
  EMBEDDED_MODEL_DIR,
  EMBEDDED_MODEL_NAME,
  resolveModelSource,
  type ResolvedModelSource,
} from './resolve-model.js';
