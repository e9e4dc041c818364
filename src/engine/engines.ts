/**
 * Which engine runs a model (and trains SAEs): `onnx` (onnxruntime-node, the fast one), `tfjs`
 * (TensorFlow.js, the reference), or `auto`, the default: onnx, unless onnxruntime cannot run here, then
 * tfjs. Both run the same definitions (src/model/family.ts, src/ops/); the choice changes speed, not results
 * beyond float32 rounding.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Checkpoint } from '../model/checkpoint.js';
import type { Model } from '../model/family.js';
import { loadModel } from '../model/registry.js';
import type { LoadModelOptions } from '../model/registry.js';
import type { ModelEngineName, ModelRunner } from '../model/runner.js';
import { TfjsRunner, checkFitsBackend } from '../model/tfjs-runner.js';
import type { TfjsRunnerOptions } from '../model/tfjs-runner.js';

export const ENGINES = ['auto', 'onnx', 'tfjs'] as const;
export type EngineChoice = (typeof ENGINES)[number];

let probe: Promise<string | null> | undefined;

/**
 * Null when onnxruntime-node loads and runs a one-node graph here, else why not. Loaded dynamically so
 * that a missing or broken native binding is an answer rather than a crash. Asked once per process.
 */
export function onnxUnavailable(): Promise<string | null> {
  probe ??= (async () => {
    try {
      const { evaluateOnnx } = await import('../ops/evaluate.js');
      await evaluateOnnx((o, { x }) => ({ y: o.add(x!, x!) }), {
        x: { shape: [1], data: Float32Array.of(1) },
      });
      return null;
    } catch (e) {
      return (e as Error).message.split('\n')[0] ?? String(e);
    }
  })();
  return probe;
}

/** The engine `choice` means here, logged with why. */
export async function resolveEngine(
  choice: EngineChoice,
  log: (message: string) => void = () => undefined,
  probeOnnx: () => Promise<string | null> = onnxUnavailable,
): Promise<ModelEngineName> {
  if (choice !== 'auto') {
    log(`engine: ${choice} (requested)`);
    return choice;
  }
  const why = await probeOnnx();
  if (why === null) {
    log('engine: onnx (auto: onnxruntime-node runs here)');
    return 'onnx';
  }
  log(`engine: tfjs (auto: onnxruntime-node cannot run here: ${why})`);
  return 'tfjs';
}

export interface RunnerOptions extends TfjsRunnerOptions {
  /** onnxruntime intra-op threads (default: every core). */
  threads?: number;
}

/**
 * Loads a model for `engine`, refusing first (from the checkpoint's headers) one the engine cannot hold,
 * instead of after minutes of loading.
 */
export async function loadModelFor(
  dir: string,
  engine: ModelEngineName,
  options: LoadModelOptions = {},
): Promise<Model> {
  if (engine === 'tfjs') checkFitsBackend((await Checkpoint.open(dir)).float32Bytes, tf.getBackend());
  return loadModel(dir, options);
}

/** The model on `engine`; dispose the runner when done. */
export async function createRunner(
  model: Model,
  engine: ModelEngineName,
  options: RunnerOptions = {},
): Promise<ModelRunner> {
  if (engine === 'tfjs') return TfjsRunner.create(model, { logitChunkRows: options.logitChunkRows });
  const { OnnxRunner } = await import('./onnx/onnx-runner.js');
  return new OnnxRunner(model, { threads: options.threads });
}
