import { createRunner, loadModelFor, resolveEngine } from '../../engine/engines.js';
import type { EngineChoice } from '../../engine/engines.js';
import type { Activation, ModelConfig, TokenBatch, WeightProcessing } from '../../model/index.js';

export { ENGINES } from '../../engine/engines.js';
export type EngineName = EngineChoice;

/**
 * What the activation stages need from a model, whichever engine runs it (a `ModelRunner` of either
 * engine is one).
 */
export interface ActivationEngine {
  readonly config: ModelConfig;
  runWithHooks(
    tokens: TokenBatch,
    options: { hooks: readonly string[] },
  ): Promise<{ activations: Map<string, Activation> }>;
  dispose(): void | Promise<void>;
}

export async function loadActivationEngine(
  dir: string,
  options: { engine: EngineChoice; processing: WeightProcessing; log?: (message: string) => void },
): Promise<ActivationEngine> {
  const engine = await resolveEngine(options.engine, options.log);
  return createRunner(await loadModelFor(dir, engine, { processing: options.processing }), engine);
}
