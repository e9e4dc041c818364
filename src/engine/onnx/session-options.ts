/**
 * Session options shared by every onnxruntime session saeflow creates: intra-op threads (all cores by
 * default) and the execution provider. `cuda` needs onnxruntime-node's CUDA 12 libraries, which its
 * install script fetches only when asked (`ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci`; this repository's
 * .npmrc skips the download so that installs work offline).
 */
import { availableParallelism } from 'node:os';
import type { InferenceSession } from 'onnxruntime-node';
import { UserError } from '../../pipeline/errors.js';

export const ONNX_DEVICES = ['cpu', 'cuda'] as const;
export type OnnxDevice = (typeof ONNX_DEVICES)[number];

export interface OnnxExecution {
  /** Default `cpu`. */
  device?: OnnxDevice;
  /** Intra-op threads; default os.availableParallelism(). */
  threads?: number;
}

export function onnxSessionOptions(execution: OnnxExecution = {}): InferenceSession.SessionOptions {
  const threads = execution.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1)
    throw new UserError(`threads must be a positive integer, got ${execution.threads}`);
  const device = execution.device ?? 'cpu';
  if (!ONNX_DEVICES.includes(device))
    throw new UserError(
      `unknown ONNX device '${String(device)}' (expected one of: ${ONNX_DEVICES.join(', ')})`,
    );
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    executionProviders: device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    // Adam's second moments underflow into denormals, which x86 computes ~100x slower than normal floats.
    extra: { session: { set_denormal_as_zero: '1' } },
    ...((execution as { profile?: boolean }).profile
      ? { enableProfiling: true, profileFilePrefix: '/tmp/ortprof2' }
      : {}),
  };
}
