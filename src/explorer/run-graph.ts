/**
 * Runs an explorer graph on onnxruntime-node (one thread, like the page), for measuring what float16
 * weights change before the export chooses them.
 */
import type { OnnxModel } from '../engine/onnx/onnx-proto.js';
import { loadOrt } from '../engine/onnx/ort.js';
import { createSession } from '../engine/onnx/session-source.js';
import { onnxSessionOptions } from '../engine/onnx/session-options.js';

/** Feature activations [tokens, d_sae] of one sequence of token ids. */
export async function runFeatures(
  model: OnnxModel,
  names: { input: string; features: string },
  ids: readonly number[],
): Promise<Float32Array> {
  const ort = await loadOrt();
  const session = await createSession(model, onnxSessionOptions({ threads: 1, device: 'cpu' }));
  try {
    const input = new ort.Tensor('int32', Int32Array.from(ids), [1, ids.length]);
    const out = await session.run({ [names.input]: input });
    return out[names.features]!.data as Float32Array;
  } finally {
    await session.release();
  }
}
