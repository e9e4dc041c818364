import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTfjsModel } from '../src/model/index.js';
import type { TfjsRunner, TokenBatch } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { UserError } from '../src/pipeline/errors.js';
import { Sae } from '../src/sae/index.js';
import type { HostTensor, SaeFolderConfig } from '../src/sae/index.js';
import { parseSavedArchitecture } from '../src/sae/saved-architecture.js';
import { loadSae, saeInterventions } from '../src/sae-formats/index.js';
import type { InferenceSae } from '../src/sae/inference.js';
import { Mulberry32 } from '../src/util/random.js';
import { loadReference, MODEL_F32, relErr } from './gpt2-fixture.js';
import { CASES } from './sae-formats-helpers.js';

let centred: TfjsRunner;
let plain: TfjsRunner;
let tokens: TokenBatch;
beforeAll(async () => {
  await selectBackend('cpu');
  centred = await loadTfjsModel(MODEL_F32, { processing: 'center_writing_weights' });
  plain = await loadTfjsModel(MODEL_F32);
  tokens = (await loadReference()).tokens;
});
afterAll(() => {
  centred.dispose();
  plain.dispose();
});

function random(shape: number[], scale: number, rng: Mulberry32): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale) };
}

/** A random SAE (or transcoder) on the tiny GPT-2's widths. */
function syntheticSae(
  architecture: string,
  dIn: number,
  dOut: number,
  metadata: Record<string, unknown>,
): InferenceSae & { ref: Sae; dispose(): void } {
  const rng = new Mulberry32(99);
  const kind = parseSavedArchitecture(architecture)!;
  const S = 96;
  const tensors: Record<string, HostTensor> = {
    W_enc: random([dIn, S], 0.3, rng),
    b_enc: random([S], 0.1, rng),
    W_dec: random([S, dOut], 0.3, rng),
    b_dec: random([dOut], 0.1, rng),
  };
  if (kind.encoder === 'jumprelu') {
    tensors.threshold = { shape: [S], data: Float32Array.from({ length: S }, () => rng.next() * 0.05) };
  }
  if (kind.skip) tensors.W_skip = random([dOut, dIn], 0.1, rng);
  const config: SaeFolderConfig = {
    architecture,
    d_in: dIn,
    d_sae: S,
    ...(kind.transcoder ? { d_out: dOut } : {}),
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: !kind.transcoder,
    normalize_activations: 'none',
    reshape_activations: String(metadata.hook_name).endsWith('hook_z') ? 'hook_z' : 'none',
    metadata,
  };
  // The tfjs Sae computes the expected reconstruction independently of the op-layer forward.
  const ref = Sae.fromTensors(config, kind, tensors);
  return { config, kind, tensors, ref, dispose: () => ref.dispose() };
}

function forwardRows({ ref: sae }: { ref: Sae }, data: Float32Array, width: number): Float32Array {
  const x = tf.tensor2d(data, [data.length / width, width]);
  const y = sae.forward(x);
  const out = Float32Array.from(y.dataSync() as Float32Array);
  tf.dispose([x, y]);
  return out;
}

describe('a loaded SAE as a hook replacement in GPT-2', () => {
  it('replaces the hook activation by the reconstruction, under the processing the SAE needs', async () => {
    const hook = 'blocks.1.hook_resid_pre';
    const sae = syntheticSae('jumprelu', 64, 64, {
      hook_name: hook,
      model_from_pretrained_kwargs: { center_writing_weights: true },
    });
    expect(() => saeInterventions(sae, plain)).toThrow(UserError);
    expect(() => saeInterventions(sae, plain)).toThrow(
      /trained on a model loaded with weight processing 'center_writing_weights', but the model was loaded with 'none'/,
    );
    const clean = await centred.runWithHooks(tokens, { hooks: [hook, 'blocks.1.hook_resid_post'] });
    const patched = await centred.runWithHooks(tokens, {
      hooks: [hook, 'blocks.1.hook_resid_post'],
      interventions: saeInterventions(sae, centred),
    });
    const x = clean.activations.get(hook)!;
    const expected = forwardRows(sae, x.data, 64);
    expect(patched.activations.get(hook)!.shape).toEqual(x.shape);
    expect(relErr(patched.activations.get(hook)!.data, expected)).toBeLessThan(1e-6);
    // The rest of the forward continues from the reconstruction.
    expect(
      relErr(
        patched.activations.get('blocks.1.hook_resid_post')!.data,
        clean.activations.get('blocks.1.hook_resid_post')!.data,
      ),
    ).toBeGreaterThan(1e-3);
    // Nothing leaks per run.
    const before = tf.memory().numTensors;
    await centred.lossPerToken(tokens, { interventions: saeInterventions(sae, centred) });
    expect(tf.memory().numTensors).toBe(before);
    sae.dispose();
  });

  it('a transcoder replaces its output hook with its prediction from its input hook', async () => {
    const sae = syntheticSae('jumprelu_skip_transcoder', 64, 64, {
      hook_name: 'blocks.0.ln2.hook_normalized',
      hook_name_out: 'blocks.0.hook_mlp_out',
    });
    const hooks = ['blocks.0.ln2.hook_normalized', 'blocks.0.hook_mlp_out'];
    const patched = await plain.runWithHooks(tokens, { hooks, interventions: saeInterventions(sae, plain) });
    const input = patched.activations.get(hooks[0]!)!;
    const expected = forwardRows(sae, input.data, 64);
    expect(relErr(patched.activations.get(hooks[1]!)!.data, expected)).toBeLessThan(1e-6);
    const before = tf.memory().numTensors;
    await plain.lossPerToken(tokens, { interventions: saeInterventions(sae, plain) });
    expect(tf.memory().numTensors).toBe(before);
    sae.dispose();
  });

  it('hook_z SAEs see the heads flattened, as SAELens reshapes them', async () => {
    const hook = 'blocks.0.attn.hook_z';
    const sae = syntheticSae('standard', 64, 64, { hook_name: hook });
    const clean = await plain.runWithHooks(tokens, { hooks: [hook] });
    const patched = await plain.runWithHooks(tokens, {
      hooks: [hook],
      interventions: saeInterventions(sae, plain),
    });
    const z = clean.activations.get(hook)!;
    expect(z.shape.slice(2)).toEqual([4, 16]);
    expect(relErr(patched.activations.get(hook)!.data, forwardRows(sae, z.data, 64))).toBeLessThan(1e-6);
    sae.dispose();
  });

  it('names what does not fit: the width, an unknown hook, a missing hook name', async () => {
    const loaded = await loadSae(CASES['saelens-v6']);
    const sae = loaded;
    expect(loaded.requiredProcessing).toBe('center_writing_weights');
    expect(() => saeInterventions(sae, centred)).toThrow(
      /d_in is 16 but hook blocks\.1\.hook_resid_pre has width 64/,
    );
    expect(() => saeInterventions(sae, centred, { hookName: 'blocks.7.hook_resid_pre' })).toThrow(
      /layer 7 is out of range/,
    );
    const gemma = await loadSae(CASES['gemma-res']);
    gemma.config.metadata = {};
    expect(() => saeInterventions(gemma, plain)).toThrow(/records no hook_name/);
  });
});
