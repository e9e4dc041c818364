import { Gpt2Onnx } from '../../engine/onnx/gpt2-onnx.js';
import {
  loadGpt2,
  loadGpt2Weights,
  readGpt2Config,
  type Activation,
  type Gpt2Config,
  type TokenBatch,
  type WeightProcessing,
} from '../../model/index.js';

export const ENGINES = ['tfjs', 'onnx'] as const;
export type EngineName = (typeof ENGINES)[number];

/**
 * What the activation stages need from a model, whichever engine runs it: the TensorFlow.js GPT-2
 * (interventions, loss, autodiff) or the onnxruntime one (hooks only, several times faster on CPU).
 */
export interface ActivationEngine {
  readonly config: Gpt2Config;
  runWithHooks(
    tokens: TokenBatch,
    options: { hooks: readonly string[] },
  ): Promise<{ activations: Map<string, Activation> }>;
  dispose(): void | Promise<void>;
}

export async function loadActivationEngine(
  dir: string,
  options: { engine: EngineName; processing: WeightProcessing },
): Promise<ActivationEngine> {
  if (options.engine === 'tfjs') return loadGpt2(dir, { processing: options.processing });
  const config = await readGpt2Config(dir);
  return new Gpt2Onnx(config, await loadGpt2Weights(dir, config), { processing: options.processing });
}
