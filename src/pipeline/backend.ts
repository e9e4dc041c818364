import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { checkOnnxDevice, setDefaultOnnxDevice } from '../engine/onnx/session-options.js';
import type { BackendRequest } from './cli-args.js';
import { UserError } from './errors.js';

export interface BackendInfo {
  /** The tfjs backend name now active: `tensorflow`, `wasm` or `cpu`. */
  name: string;
  /** The npm package that provides it. */
  package: string;
  /** Threads its kernels use. */
  threads: number;
  /** Why `auto` chose it, or that it was requested. */
  reason: string;
}

const require = createRequire(import.meta.url);

/** tfjs-node(-gpu) are optional dependencies: they cannot install everywhere, so loading may fail. */
async function tryNative(): Promise<{ pkg: string } | { error: string }> {
  const errors: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      return { pkg };
    } catch (e) {
      errors.push(`${pkg}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return { error: errors.join('; ') };
}

async function useWasm(): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // In Node the .wasm binaries are not fetched from a URL: point tfjs at the installed package.
  wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'))}/dist/`);
  if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") returned false');
  await tf.ready();
}

async function useCpu(): Promise<void> {
  await import('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new Error('tf.setBackend("cpu") returned false');
  await tf.ready();
}

async function wasmThreads(): Promise<number> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  return wasm.getThreadsCount();
}

/**
 * Activates a TensorFlow.js backend. `auto` prefers the native TensorFlow binding (GPU build first),
 * then wasm (SIMD; ~40x faster than pure JS here), then the pure-JS cpu backend.
 */
export async function selectBackend(request: BackendRequest): Promise<BackendInfo> {
  if (request === 'cuda') {
    // The onnx engine computes on the GPU; what little stays on TensorFlow.js runs on its best CPU backend.
    await checkOnnxDevice('cuda');
    setDefaultOnnxDevice('cuda');
    const tfjs = await selectBackend('auto');
    return {
      name: 'cuda',
      package: `onnxruntime-node (CUDA execution provider) + ${tfjs.package}`,
      threads: tfjs.threads,
      reason: 'requested: onnx engines run on the GPU',
    };
  }
  setDefaultOnnxDevice('cpu');
  if (request === 'tensorflow' || request === 'auto') {
    const native = await tryNative();
    if ('pkg' in native) {
      return {
        name: tf.getBackend(),
        package: native.pkg,
        threads: os.availableParallelism(),
        reason: request === 'auto' ? `auto: ${native.pkg} is installed` : 'requested',
      };
    }
    if (request === 'tensorflow') {
      throw new UserError(
        `--backend tensorflow needs @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu, which did not load (${native.error}). ` +
          'Their install script downloads libtensorflow; where that is impossible use --backend wasm.',
      );
    }
  }
  if (request === 'wasm' || request === 'auto') {
    try {
      await useWasm();
      return {
        name: 'wasm',
        package: '@tensorflow/tfjs-backend-wasm',
        threads: await wasmThreads(),
        reason:
          request === 'auto'
            ? 'auto: no native TensorFlow binding; wasm is the fastest that loads'
            : 'requested',
      };
    } catch (e) {
      if (request === 'wasm') throw new UserError(`--backend wasm failed to load: ${(e as Error).message}`);
    }
  }
  await useCpu();
  return {
    name: 'cpu',
    package: '@tensorflow/tfjs-backend-cpu',
    threads: 1,
    reason: request === 'auto' ? 'auto: neither native TensorFlow nor wasm loaded' : 'requested',
  };
}
