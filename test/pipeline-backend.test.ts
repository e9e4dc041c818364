import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';

describe('backend selection', () => {
  it('auto falls back to wasm when the native binding is not installed', async () => {
    const info = await selectBackend('auto');
    // On machines where tfjs-node installed, auto must pick it; here it cannot install.
    expect(['wasm', 'tensorflow']).toContain(info.name);
    expect(tf.getBackend()).toBe(info.name);
    expect(info.threads).toBeGreaterThanOrEqual(1);
    const y = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0]);
    expect(y).toBe(11);
  });

  it('cpu is selectable', async () => {
    const info = await selectBackend('cpu');
    expect(info).toMatchObject({ name: 'cpu', threads: 1, reason: 'requested' });
    expect(tf.getBackend()).toBe('cpu');
  });

  it('tensorflow without tfjs-node is a user error that says what to do', async () => {
    let native = true;
    try {
      await import('@tensorflow/tfjs-node' as string);
    } catch {
      native = false;
    }
    if (native) return;
    await expect(selectBackend('tensorflow')).rejects.toThrow(
      /--backend tensorflow needs @tensorflow\/tfjs-node.*--backend wasm/,
    );
  });
});
