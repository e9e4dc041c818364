import { cp, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors, tensorToFloat32, writeSafetensors } from '../src/io/safetensors.js';
import type { Tensor } from '../src/io/safetensors.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { UserError } from '../src/pipeline/errors.js';
import { Sae, readSaeFolder } from '../src/sae/index.js';
import { detectSaeFormat, loadSae, saveAsSaelens, toSae } from '../src/sae-formats/index.js';
import type { LoadedSae } from '../src/sae-formats/index.js';
import { CASES, fixture, loadReference, relErr, run } from './sae-formats-helpers.js';
import type { CaseName } from './sae-formats-helpers.js';

let tmp: string;
beforeAll(async () => {
  await selectBackend('cpu');
  tmp = await mkdtemp(path.join(tmpdir(), 'saeflow-sae-formats-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});
let counter = 0;
const fresh = (name: string) => path.join(tmp, `${counter++}-${name}`);

interface Expect {
  format: LoadedSae['format'];
  architecture: string;
  hook: string;
  hookOut?: string;
  applyBDec: boolean;
  k?: number;
  processing?: string;
  sparsity?: boolean;
}

const EXPECTED: Record<CaseName, Expect> = {
  'saelens-v6': {
    format: 'saelens',
    architecture: 'jumprelu',
    hook: 'blocks.1.hook_resid_pre',
    applyBDec: true,
    processing: 'center_writing_weights',
    sparsity: true,
  },
  'saelens-legacy': {
    format: 'saelens-legacy',
    architecture: 'standard',
    hook: 'blocks.1.hook_resid_pre',
    applyBDec: true,
    sparsity: true,
  },
  'saelens-legacy-topk': {
    format: 'saelens-legacy',
    architecture: 'topk',
    hook: 'blocks.0.hook_mlp_out',
    applyBDec: true,
    k: 5,
  },
  'gemma-res': {
    format: 'gemma-scope',
    architecture: 'jumprelu',
    hook: 'blocks.3.hook_resid_post',
    applyBDec: false,
  },
  'gemma-mlp': {
    format: 'gemma-scope',
    architecture: 'jumprelu',
    hook: 'blocks.0.hook_mlp_out',
    applyBDec: false,
  },
  'gemma-att': {
    format: 'gemma-scope',
    architecture: 'jumprelu',
    hook: 'blocks.1.attn.hook_z',
    applyBDec: false,
  },
  'gemma-transcoder': {
    format: 'gemma-scope',
    architecture: 'jumprelu_transcoder',
    hook: 'blocks.2.ln2.hook_normalized',
    hookOut: 'blocks.2.hook_mlp_out',
    applyBDec: false,
  },
  sparsify: {
    format: 'sparsify',
    architecture: 'topk',
    hook: 'blocks.6.hook_resid_post',
    applyBDec: true,
    k: 4,
  },
  'sparsify-transcoder': {
    format: 'sparsify',
    architecture: 'topk_skip_transcoder',
    hook: 'blocks.1.ln2.hook_normalized',
    hookOut: 'blocks.1.hook_mlp_out',
    applyBDec: false,
    k: 6,
  },
};

describe('loading every published layout', () => {
  for (const [name, source] of Object.entries(CASES) as [CaseName, string][]) {
    const e = EXPECTED[name];
    it(`${name}: loads, matches the numpy reference, and survives a SAELens round trip exactly`, async () => {
      const loaded = await loadSae(source);
      expect(loaded.format).toBe(e.format);
      const { config } = loaded;
      expect(config.architecture).toBe(e.architecture);
      expect([config.d_in, config.d_sae, config.d_out ?? config.d_in]).toEqual([16, 32, 16]);
      expect(config.metadata.hook_name).toBe(e.hook);
      expect(config.metadata.hook_name_out).toBe(e.hookOut);
      expect(config.apply_b_dec_to_input).toBe(e.applyBDec);
      expect(config.k).toBe(e.k);
      expect(loaded.requiredProcessing).toBe(e.processing ?? 'none');
      expect(loaded.sparsity !== null).toBe(e.sparsity ?? false);
      if (e.architecture.startsWith('jumprelu')) expect(loaded.tensors.threshold?.shape).toEqual([32]);

      const ref = await loadReference(name);
      const sae = toSae(loaded);
      const direct = run(sae, ref.x);
      sae.dispose();
      expect(relErr(direct.f, ref.features)).toBeLessThan(2e-6);
      expect(relErr(direct.recon, ref.reconstruction)).toBeLessThan(2e-6);
      // The same features fire (no threshold or top-k decision flipped).
      expect(Array.from(direct.f, (v) => v > 0)).toEqual(Array.from(ref.features, (v) => v > 0));

      const out = fresh(name);
      await saveAsSaelens(loaded, out);
      const folder = await readSaeFolder(out);
      expect(Object.keys(folder.tensors).sort()).toEqual(Object.keys(loaded.tensors).sort());
      for (const [t, v] of Object.entries(loaded.tensors)) {
        expect(folder.tensors[t]!.shape).toEqual(v.shape);
        expect(Buffer.from(folder.tensors[t]!.data.buffer).equals(Buffer.from(v.data.buffer))).toBe(true);
      }
      expect(folder.sparsity).toEqual(loaded.sparsity);
      const converted = await Sae.load(out);
      const again = run(converted, ref.x);
      converted.dispose();
      expect(again.f).toEqual(direct.f);
      expect(again.recon).toEqual(direct.recon);

      const reloaded = await loadSae(out);
      expect(reloaded.format).toBe('saelens');
      expect(reloaded.notes).toEqual([]);
      expect(reloaded.requiredProcessing).toBe(loaded.requiredProcessing);
      const { metadata, ...rest } = reloaded.config;
      const { metadata: originalMeta, ...originalRest } = loaded.config;
      expect(rest).toEqual(originalRest);
      expect(metadata).toMatchObject({ ...originalMeta, sae_lens_version: '6.18.0' });
      expect(metadata.converted_from).toEqual({ format: loaded.format });
    });
  }

  it('maps the flat pre-6.0 config keys the way SAELens does', async () => {
    const loaded = await loadSae(CASES['saelens-legacy']);
    expect(loaded.config).toMatchObject({
      dtype: 'float32',
      normalize_activations: 'none',
      reshape_activations: 'none',
      metadata: {
        model_name: 'gpt2-small',
        hook_name: 'blocks.1.hook_resid_pre',
        hook_head_index: null,
        dataset_path: 'Skylion007/openwebtext',
        context_size: 128,
      },
    });
    // Training options of the old flat layout are not SAE config.
    for (const key of [
      'lr',
      'l1_coefficient',
      'hook_point',
      'hook_point_layer',
      'expansion_factor',
      'run_name',
    ]) {
      expect(loaded.config).not.toHaveProperty(key);
      expect(loaded.config.metadata).not.toHaveProperty(key);
    }
    expect(loaded.notes).toContain('dropped a scaling_factor of ones');
    const topk = await loadSae(CASES['saelens-legacy-topk']);
    expect(topk.config.metadata.sae_lens_version).toBe('5.4.2');
    expect(topk.notes).toContain('weights widened from float16 to float32');
  });

  it("sparsify's encoder.weight [n, d] becomes W_enc [d, n]; the run config names the model", async () => {
    const loaded = await loadSae(CASES.sparsify);
    const { tensors } = await readSafetensors(path.join(CASES.sparsify, 'sae.safetensors'));
    const enc = tensorToFloat32(tensors.get('encoder.weight')!);
    expect(tensors.get('encoder.weight')!.shape).toEqual([32, 16]);
    expect(loaded.tensors.W_enc!.shape).toEqual([16, 32]);
    for (const [r, c] of [
      [0, 0],
      [3, 7],
      [15, 31],
    ] as const) {
      expect(loaded.tensors.W_enc!.data[r * 32 + c]).toBe(enc[c * 16 + r]);
    }
    expect(loaded.config.metadata).toMatchObject({
      model_name: 'EleutherAI/pythia-70m',
      context_size: 2048,
      sparsify_hookpoint: 'layers.6',
    });
    expect(loaded.config.rescale_acts_by_decoder_norm).toBe(false);
    const tc = await loadSae(CASES['sparsify-transcoder']);
    expect(tc.tensors.W_skip!.shape).toEqual([16, 16]);
  });

  it('folds the Gemma Scope embedding scale and keeps thresholds', async () => {
    const dir = path.join(fresh('gemma'), 'gemma-scope-2b-pt-res', 'embedding', 'width_4k', 'average_l0_6');
    await cp(CASES['gemma-res'], dir, { recursive: true });
    const plain = await loadSae(CASES['gemma-res']);
    const emb = await loadSae(dir);
    expect(emb.config.metadata.hook_name).toBe('hook_embed');
    const r = Math.sqrt(16);
    expect(emb.tensors.W_enc!.data[5]).toBeCloseTo(plain.tensors.W_enc!.data[5]! / r, 6);
    expect(emb.tensors.W_dec!.data[5]).toBeCloseTo(plain.tensors.W_dec!.data[5]! * r, 6);
    expect(emb.tensors.threshold!.data).toEqual(plain.tensors.threshold!.data);
  });

  it('accepts a weights file instead of its folder, and a hook name for unlabelled Gemma Scope files', async () => {
    expect((await detectSaeFormat(path.join(CASES['saelens-v6'], 'sae_weights.safetensors'))).path).toBe(
      CASES['saelens-v6'],
    );
    const bare = path.join(fresh('bare'), 'params.npz');
    await cp(path.join(CASES['gemma-res'], 'params.npz'), bare);
    const unknown = await loadSae(bare);
    expect(unknown.config.metadata.hook_name).toBeUndefined();
    expect(unknown.notes.join()).toMatch(/hook not recognised/);
    const named = await loadSae(bare, { hookName: 'blocks.0.attn.hook_z' });
    expect(named.config.metadata.hook_name).toBe('blocks.0.attn.hook_z');
    expect(named.config.reshape_activations).toBe('hook_z');
  });
});

async function copyCase(name: CaseName): Promise<string> {
  const dir = fresh(name);
  await cp(CASES[name], dir, { recursive: true });
  return dir;
}

async function rewriteJson(file: string, edit: (c: Record<string, unknown>) => void): Promise<void> {
  const c = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  await writeFile(file, JSON.stringify(c));
}

async function rewriteTensors(file: string, edit: (t: Record<string, Tensor>) => void): Promise<void> {
  const { tensors } = await readSafetensors(file);
  const t = Object.fromEntries(tensors);
  edit(t);
  await writeSafetensors(file, t);
}

async function failure(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(UserError);
  return (e as Error).message;
}

describe('bad input is a UserError naming the file and the field', () => {
  it('SAELens: missing tensor, cfg.json that disagrees with the weights, unknown architecture, truncation', async () => {
    let dir = await copyCase('saelens-v6');
    await rewriteTensors(path.join(dir, 'sae_weights.safetensors'), (t) => delete t.threshold);
    expect(await failure(loadSae(dir))).toMatch(/sae_weights\.safetensors: tensor 'threshold' not found/);

    dir = await copyCase('saelens-v6');
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => (c.d_sae = 33));
    expect(await failure(loadSae(dir))).toMatch(
      /sae_weights\.safetensors: tensor 'W_enc' has shape \[16, 32\], expected \[16, 33\] from cfg\.json/,
    );

    dir = await copyCase('saelens-v6');
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => (c.architecture = 'matryoshka'));
    expect(await failure(loadSae(dir))).toMatch(/cfg\.json: architecture "matryoshka" is not supported/);

    dir = await copyCase('saelens-v6');
    await writeFile(path.join(dir, 'cfg.json'), '{"d_in": 16,');
    expect(await failure(loadSae(dir))).toMatch(/cfg\.json: invalid JSON/);

    dir = await copyCase('saelens-v6');
    await truncate(path.join(dir, 'sae_weights.safetensors'), 3000);
    expect(await failure(loadSae(dir))).toMatch(/sae_weights\.safetensors/);

    dir = await copyCase('saelens-v6');
    await rewriteTensors(path.join(dir, 'sae_weights.safetensors'), (t) => {
      (t.b_enc!.data as Float32Array)[3] = NaN;
    });
    expect(await failure(loadSae(dir))).toMatch(
      /tensor 'b_enc' holds a non-finite value \(NaN\) at flat index 3/,
    );
  });

  it('legacy SAELens: unsupported activation, topk without k, non-unit scaling_factor', async () => {
    let dir = await copyCase('saelens-legacy');
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => (c.activation_fn_str = 'tanh-relu'));
    expect(await failure(loadSae(dir))).toMatch(
      /cfg\.json: 'activation_fn_str' "tanh-relu" is not supported/,
    );

    dir = await copyCase('saelens-legacy-topk');
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => (c.activation_fn_kwargs = {}));
    expect(await failure(loadSae(dir))).toMatch(
      /cfg\.json: 'activation_fn_str' is 'topk' but 'activation_fn_kwargs\.k'/,
    );

    dir = await copyCase('saelens-legacy');
    const scale = Float32Array.from({ length: 32 }, (_, i) => 1 + i / 64);
    await rewriteTensors(path.join(dir, 'sae_weights.safetensors'), (t) => {
      t.scaling_factor = { dtype: 'F32', shape: [32], data: scale };
    });
    expect(await failure(loadSae(dir))).toMatch(
      /tensor 'scaling_factor' is not all ones but cfg\.json's 'finetuning_scaling_factor' is not true/,
    );
    // SAELens multiplies feature activations by it before decoding: folded into W_dec.
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => (c.finetuning_scaling_factor = true));
    const loaded = await loadSae(dir);
    const ref = await loadReference('saelens-legacy');
    const sae = toSae(loaded);
    const got = run(sae, ref.x);
    sae.dispose();
    const original = await loadSae(CASES['saelens-legacy']);
    const [W, b] = [original.tensors.W_dec!.data, original.tensors.b_dec!.data];
    const expected = new Float32Array(8 * 16);
    for (let r = 0; r < 8; r++) {
      for (let c = 0; c < 16; c++) {
        let v = b[c]!;
        for (let j = 0; j < 32; j++) v += ref.features[r * 32 + j]! * scale[j]! * W[j * 16 + c]!;
        expected[r * 16 + c] = v;
      }
    }
    expect(relErr(got.recon, expected)).toBeLessThan(2e-6);
  });

  it('folds a known norm_scaling_factor of an expected_average_only_in SAE', async () => {
    const dir = await copyCase('saelens-v6');
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => {
      c.normalize_activations = 'expected_average_only_in';
      c.norm_scaling_factor = 2;
    });
    const loaded = await loadSae(dir);
    expect(loaded.config.normalize_activations).toBe('none');
    const ref = await loadReference('saelens-v6');
    const doubled = { shape: ref.x.shape, data: ref.x.data.map((v) => v / 2) };
    const sae = toSae(loaded);
    const got = run(sae, doubled);
    sae.dispose();
    // SAE(x/2 · 2) / 2: the original SAE on x, halved.
    expect(relErr(got.f, ref.features)).toBeLessThan(2e-6);
    expect(
      relErr(
        got.recon,
        ref.reconstruction.map((v) => v / 2),
      ),
    ).toBeLessThan(2e-6);
  });

  it('Gemma Scope: missing tensor, wrong shape, truncated or corrupt archive', async () => {
    const dir = fresh('gemma-bad');
    await cp(CASES['gemma-res'], dir, { recursive: true });
    const file = path.join(dir, 'params.npz');
    const good = await readFile(file);

    const arrays = await readSafetensors(path.join(CASES['gemma-att'], 'params.safetensors'));
    const att = path.join(fresh('att'), 'params.safetensors');
    await mkdir(path.dirname(att));
    const t = Object.fromEntries(arrays.tensors);
    delete t.threshold;
    await writeSafetensors(att, t);
    expect(await failure(loadSae(att))).toMatch(
      /params\.safetensors: missing Gemma Scope tensor 'threshold'/,
    );
    t.threshold = { dtype: 'F32', shape: [31], data: new Float32Array(31) };
    await writeSafetensors(att, t);
    expect(await failure(loadSae(att))).toMatch(
      /params\.safetensors: tensor 'threshold' has shape \[31\], expected \[32\] from W_enc \[16, 32\]/,
    );

    await writeFile(file, good.subarray(0, good.length - 100));
    expect(await failure(loadSae(dir))).toMatch(/params\.npz: .*(truncated|end-of-central-directory)/);
    await writeFile(file, good.subarray(0, 3000));
    expect(await failure(loadSae(dir))).toMatch(/params\.npz/);
    const corrupt = Buffer.from(good);
    corrupt[200]! ^= 0xff; // inside W_enc's data
    await writeFile(file, corrupt);
    expect(await failure(loadSae(dir))).toMatch(/params\.npz: member 'W_enc\.npy': CRC-32 mismatch/);
  });

  it('sparsify: cfg.json that disagrees with the weights, unsupported activation, missing tensor', async () => {
    let dir = await copyCase('sparsify');
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => (c.num_latents = 64));
    expect(await failure(loadSae(dir))).toMatch(
      /sae\.safetensors: tensor 'encoder\.weight' has shape \[32, 16\], expected \[64, 16\] from cfg\.json/,
    );
    dir = await copyCase('sparsify');
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => (c.activation = 'groupmax'));
    expect(await failure(loadSae(dir))).toMatch(/cfg\.json: 'activation' "groupmax" is not supported/);
    dir = await copyCase('sparsify');
    await rewriteJson(path.join(dir, 'cfg.json'), (c) => delete c.d_in);
    expect(await failure(loadSae(dir))).toMatch(/cfg\.json: 'd_in' must be an integer/);
    dir = await copyCase('sparsify');
    await rewriteTensors(path.join(dir, 'sae.safetensors'), (t) => delete t.W_dec);
    expect(await failure(loadSae(dir))).toMatch(/sae\.safetensors: tensor 'W_dec' not found/);
  });

  it('folders that are not one SAE say what they hold', async () => {
    expect(await failure(loadSae(fixture('sparsify')))).toMatch(
      /holds 1 SAE folders \(layers\.6\); pass one of them/,
    );
    const dir = fresh('cfg-only');
    await cp(path.join(CASES['saelens-v6'], 'cfg.json'), path.join(dir, 'cfg.json'), { recursive: true });
    expect(await failure(loadSae(dir))).toMatch(/has cfg\.json but neither sae_weights\.safetensors/);
    expect(await failure(loadSae('./no/such/sae'))).toMatch(/SAE not found: .*no\/such\/sae does not exist/);
  });
});
