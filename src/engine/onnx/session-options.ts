/**
 * Session options shared by every onnxruntime session saeflow creates: intra-op threads (all cores by
 * default) and the execution provider. `cuda` needs onnxruntime-node's CUDA 12 libraries, which its
 * install script fetches only when asked (`ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci`; this repository's
 * .npmrc skips the download so that installs work offline). The runner's `--backend cuda` sets the
 * process-wide default device after `checkOnnxDevice` has proven that a CUDA session can be created.
 */
import { availableParallelism } from 'node:os';
import type * as ort from 'onnxruntime-node';
import { loadOrt } from './ort.js';
import { UserError } from '../../pipeline/errors.js';
import { GraphBuilder } from './graph-builder.js';
import { ONNX_IR_VERSION, ONNX_OPSET, TensorElemType, encodeOnnxModel } from './onnx-proto.js';

export const ONNX_DEVICES = ['cpu', 'cuda'] as const;
export type OnnxDevice = (typeof ONNX_DEVICES)[number];

export interface OnnxExecution {
  /** Default `cpu`. */
  device?: OnnxDevice;
  /** Intra-op threads; default os.availableParallelism(). */
  threads?: number;
}

let defaultDevice: OnnxDevice = 'cpu';

/** The device sessions use when their caller names none (`--backend cuda` sets `cuda`). */
export function defaultOnnxDevice(): OnnxDevice {
  return defaultDevice;
}

export function setDefaultOnnxDevice(device: OnnxDevice): void {
  defaultDevice = device;
}

export function onnxSessionOptions(execution: OnnxExecution = {}): ort.InferenceSession.SessionOptions {
  const threads = execution.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1)
    throw new UserError(`threads must be a positive integer, got ${execution.threads}`);
  const device = execution.device ?? defaultDevice;
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
    // SAEFLOW_ORT_PROFILE=/path/prefix writes onnxruntime's per-node timings (Chrome trace JSON).
    ...(process.env.SAEFLOW_ORT_PROFILE
      ? { enableProfiling: true, profileFilePrefix: process.env.SAEFLOW_ORT_PROFILE }
      : {}),
    ...((execution as { profile?: boolean }).profile
      ? { enableProfiling: true, profileFilePrefix: '/tmp/ortprof2' }
      : {}),
  };
}

/**
 * Creates and runs a one-node session on `device` with no CPU fallback, so that a missing CUDA library
 * or driver is a clear error before any work starts rather than a silent fall back to the CPU.
 */
export async function checkOnnxDevice(device: OnnxDevice): Promise<void> {
  if (device === 'cpu') return;
  const b = new GraphBuilder();
  b.op('Neg', ['x'], 'probe', 'y');
  const vi = (name: string) => ({ name, elemType: TensorElemType.FLOAT, dims: [1] });
  const model = encodeOnnxModel({
    graph: { name: 'probe', nodes: b.nodes, initializers: [], inputs: [vi('x')], outputs: [vi('y')] },
    opset: ONNX_OPSET,
    irVersion: ONNX_IR_VERSION,
    producer: 'saeflow',
  });
  try {
    const runtime = await loadOrt();
    const session = await runtime.InferenceSession.create(model, { executionProviders: [device] });
    await session.run({ x: new runtime.Tensor('float32', Float32Array.of(1), [1]) });
    await session.release();
  } catch (e) {
    throw new UserError(
      `--backend ${device}: onnxruntime could not run on ${device} (${(e as Error).message.split('\n')[0]}). ` +
        "It needs an NVIDIA driver and onnxruntime-node's CUDA 12 libraries: reinstall with " +
        '`ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci` (downloads them), or use the CPU (--backend auto).',
    );
  }
}
