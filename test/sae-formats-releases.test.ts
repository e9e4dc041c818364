import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/pipeline/errors.js';
import { readSaeFolder } from '../src/sae/index.js';
import { findRelease, loadSae, resolveSae, saveAsSaelens, SAE_RELEASES } from '../src/sae-formats/index.js';
import { RELEASES_SOURCE } from '../src/sae-formats/releases.js';
import { nearestReleases, releaseLocation } from '../src/sae-formats/resolve.js';
import { startFakeHub } from './hub-fake-server.js';
import type { FakeHub } from './hub-fake-server.js';
import { CASES, populateCache } from './sae-formats-helpers.js';

const COMMIT = 'c'.repeat(40);
const OTHER = 'd'.repeat(40);

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'saeflow-sae-releases-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
let counter = 0;
async function freshHome(): Promise<string> {
  const home = path.join(root, `home-${counter++}`);
  await mkdir(home, { recursive: true });
  return home;
}

const legacy = (file: string) => path.join(CASES['saelens-legacy'], file);
const gemmaRes = path.join(CASES['gemma-res'], 'params.npz');

async function failure(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(UserError);
  return (e as Error).message;
}

describe('the release registry', () => {
  it("records SAELens's facts for the well-known releases", () => {
    const jb = findRelease('gpt2-small-res-jb')!;
    expect(jb).toMatchObject({
      repoId: 'jbloom/GPT2-Small-SAEs-Reformatted',
      format: 'saelens',
      model: 'gpt2-small',
    });
    expect(jb.processing).toBe('center_writing_weights');
    expect(jb.saes!.map((s) => s.id)).toContain('blocks.8.hook_resid_pre');
    expect(jb.saes!.find((s) => s.id === 'blocks.8.hook_resid_pre')!.path).toBe('blocks.8.hook_resid_pre');
    expect(findRelease('gpt2-small-resid-post-v5-128k')!.saes![8]).toEqual({
      id: 'blocks.8.hook_resid_post',
      path: 'v5_128k_layer_8',
    });
    expect(findRelease('gemma-scope-2b-pt-res')!.repoId).toBe('google/gemma-scope-2b-pt-res');
    // null: SAELens converts these from formats saeflow has no reader for (llama_scope, dictionary_learning_1...).
    expect(new Set(SAE_RELEASES.map((r) => r.format))).toEqual(
      new Set(['saelens', 'gemma-scope', 'sparsify', null]),
    );
  });
});

describe('resolving RELEASE/SAE_ID through the Hugging Face cache', () => {
  it('finds gpt2-small-res-jb in a cache laid out by huggingface_hub, with the processing it needs', async () => {
    const home = await freshHome();
    const snapshot = await populateCache(
      path.join(home, 'hub'),
      'jbloom/GPT2-Small-SAEs-Reformatted',
      COMMIT,
      {
        'blocks.1.hook_resid_pre/cfg.json': legacy('cfg.json'),
        'blocks.1.hook_resid_pre/sae_weights.safetensors': legacy('sae_weights.safetensors'),
        'blocks.1.hook_resid_pre/sparsity.safetensors': legacy('sparsity.safetensors'),
      },
    );
    const env = { HF_HOME: home, HF_HUB_OFFLINE: '1' };
    const resolved = await resolveSae('gpt2-small-res-jb/blocks.1.hook_resid_pre', { env });
    expect(resolved.source).toBe('cache');
    expect(resolved.detected).toEqual({
      format: 'saelens',
      path: path.join(snapshot, 'blocks.1.hook_resid_pre'),
    });

    const loaded = await loadSae('gpt2-small-res-jb/blocks.1.hook_resid_pre', { env });
    expect(loaded.format).toBe('saelens-legacy');
    expect(loaded.requiredProcessing).toBe('center_writing_weights');
    expect(loaded.release).toEqual({
      release: 'gpt2-small-res-jb',
      saeId: 'blocks.1.hook_resid_pre',
      repoId: 'jbloom/GPT2-Small-SAEs-Reformatted',
      path: 'blocks.1.hook_resid_pre',
      commit: COMMIT,
    });
    expect(loaded.config.metadata.model_from_pretrained_kwargs).toEqual({ center_writing_weights: true });
    const direct = await loadSae(CASES['saelens-legacy']);
    expect(direct.requiredProcessing).toBe('none');
    expect(loaded.tensors).toEqual(direct.tensors);
    expect(loaded.sparsity).toEqual(direct.sparsity);

    // The converted folder keeps what the release said, so it needs no registry to be used right.
    const out = path.join(home, 'converted');
    await saveAsSaelens(loaded, out);
    const cfg = JSON.parse(await readFile(path.join(out, 'cfg.json'), 'utf8'));
    expect(cfg.metadata.converted_from).toEqual({
      format: 'saelens-legacy',
      release: 'gpt2-small-res-jb',
      sae_id: 'blocks.1.hook_resid_pre',
      repo_id: 'jbloom/GPT2-Small-SAEs-Reformatted',
      commit: COMMIT,
    });
    expect((await loadSae(out)).requiredProcessing).toBe('center_writing_weights');
  });

  it('finds a Gemma Scope SAE and infers its hook from the repository and folder', async () => {
    const home = await freshHome();
    await populateCache(path.join(home, 'hub'), 'google/gemma-scope-2b-pt-res', COMMIT, {
      'layer_3/width_16k/average_l0_5/params.npz': gemmaRes,
    });
    const loaded = await loadSae('gemma-scope-2b-pt-res/layer_3/width_16k/average_l0_5', {
      env: { HF_HOME: home, HF_HUB_OFFLINE: '1' },
    });
    expect(loaded.format).toBe('gemma-scope');
    expect(loaded.config.metadata).toMatchObject({
      model_name: 'gemma-2-2b',
      hook_name: 'blocks.3.hook_resid_post',
    });
    expect(loaded.release?.commit).toBe(COMMIT);
  });

  it('explains what is missing when the cache lacks an SAE and the hub may not be used', async () => {
    const home = await freshHome();
    const offline = await failure(
      loadSae('gpt2-small-res-jb/blocks.8.hook_resid_pre', { env: { HF_HOME: home, HF_HUB_OFFLINE: '1' } }),
    );
    expect(offline).toContain(path.join(home, 'hub', 'models--jbloom--GPT2-Small-SAEs-Reformatted'));
    expect(offline).toContain('HF_HUB_OFFLINE');
    expect(offline).toContain('--sae /path/to/folder');
    expect(
      await failure(
        loadSae('gpt2-small-res-jb/blocks.8.hook_resid_pre', {
          env: { HF_HOME: home },
          allowDownload: false,
        }),
      ),
    ).toMatch(/downloads are disabled/);
    expect(
      await failure(loadSae('gpt2-small-res-jb/blocks.99.hook_resid_pre', { env: { HF_HOME: home } })),
    ).toMatch(
      /release gpt2-small-res-jb has no SAE 'blocks\.99\.hook_resid_pre' \(it has: blocks\.0\.hook_resid_pre, /,
    );
    expect(await failure(loadSae('gpt2-small-res-jb', { env: { HF_HOME: home } }))).toMatch(
      /name an SAE of release gpt2-small-res-jb, e\.g\. gpt2-small-res-jb\/blocks\.8\.hook_resid_pre/,
    );
    expect(await failure(loadSae('gemma-scope-2b-pt-res/layer_3', { env: { HF_HOME: home } }))).toMatch(
      /e\.g\. gemma-scope-2b-pt-res\/layer_12\/width_16k\/average_l0_82/,
    );
    expect(await failure(loadSae('not a release!', { env: { HF_HOME: home } }))).toMatch(/unknown release/);
  });
});

describe('downloading from the hub into the cache', () => {
  let hub: FakeHub;
  const files = async (map: Record<string, string>, lfs = true) =>
    Object.fromEntries(
      await Promise.all(
        Object.entries(map).map(async ([p, src]) => [
          p,
          { content: await readFile(src), lfs: lfs && !p.endsWith('.json') },
        ]),
      ),
    );
  beforeAll(async () => {
    hub = await startFakeHub([
      {
        type: 'model',
        id: 'google/gemma-scope-2b-pt-transcoders',
        refs: { main: COMMIT },
        commits: {
          [COMMIT]: await files({
            'layer_2/width_16k/average_l0_9/params.npz': path.join(CASES['gemma-transcoder'], 'params.npz'),
          }),
        },
      },
      {
        type: 'model',
        id: 'jbloom/GPT2-Small-OAI-v5-128k-resid-post-SAEs',
        refs: { main: COMMIT },
        commits: {
          // No sparsity.safetensors here: the optional file's 404 is not an error.
          [COMMIT]: await files({
            'v5_128k_layer_1/cfg.json': path.join(CASES['saelens-legacy-topk'], 'cfg.json'),
            'v5_128k_layer_1/sae_weights.safetensors': path.join(
              CASES['saelens-legacy-topk'],
              'sae_weights.safetensors',
            ),
          }),
        },
      },
      {
        type: 'model',
        id: 'someone/my-saes',
        refs: { main: OTHER },
        commits: {
          [OTHER]: await files({
            'layers.6/cfg.json': path.join(CASES.sparsify, 'cfg.json'),
            'layers.6/sae.safetensors': path.join(CASES.sparsify, 'sae.safetensors'),
            'README.md': path.join(CASES.sparsify, 'cfg.json'),
          }),
        },
      },
    ]);
  });
  afterAll(async () => {
    await hub.close();
  });

  it('downloads a release SAE once, then finds it in the cache offline', async () => {
    const home = await freshHome();
    const env = { HF_HOME: home, HF_ENDPOINT: hub.endpoint };
    const ref = 'gemma-scope-2b-pt-transcoders/layer_2/width_16k/average_l0_9';
    const first = await resolveSae(ref, { env });
    expect(first.source).toBe('download');
    const loaded = await loadSae(ref, { env: { ...env, HF_HUB_OFFLINE: '1' } });
    expect(loaded.config).toMatchObject({
      architecture: 'jumprelu_transcoder',
      d_out: 16,
      metadata: { hook_name: 'blocks.2.ln2.hook_normalized', hook_name_out: 'blocks.2.hook_mlp_out' },
    });
    expect(loaded.source).toBe(first.detected.path);
    expect(
      loaded.source.startsWith(path.join(home, 'hub', 'models--google--gemma-scope-2b-pt-transcoders')),
    ).toBe(true);
  });

  it('skips optional files the repository does not have', async () => {
    const home = await freshHome();
    const loaded = await loadSae('gpt2-small-resid-post-v5-128k/blocks.1.hook_resid_post', {
      env: { HF_HOME: home, HF_ENDPOINT: hub.endpoint },
    });
    expect(loaded.format).toBe('saelens-legacy');
    expect(loaded.sparsity).toBeNull();
    expect(loaded.config.metadata.dataset_path).toBe('Skylion007/openwebtext');
    expect(loaded.release).toMatchObject({ path: 'v5_128k_layer_1', commit: COMMIT });
  });

  it('detects the layout of an ORG/REPO/FOLDER that is in no release from the hub listing', async () => {
    const home = await freshHome();
    const env = { HF_HOME: home, HF_ENDPOINT: hub.endpoint };
    const loaded = await loadSae('someone/my-saes/layers.6', { env });
    expect(loaded.format).toBe('sparsify');
    expect(loaded.config.metadata.hook_name).toBe('blocks.6.hook_resid_post');
    expect(loaded.release).toMatchObject({ repoId: 'someone/my-saes', path: 'layers.6', commit: OTHER });
    const direct = await loadSae(CASES.sparsify);
    expect(loaded.tensors).toEqual(direct.tensors);
    expect(await failure(loadSae('someone/my-saes/nothing-here', { env }))).toMatch(
      /someone\/my-saes\/nothing-here: no SAE there on the hub/,
    );
    expect(await failure(loadSae('someone/absent-repo/x', { env }))).toMatch(/repository not found|HTTP 404/);
    const converted = path.join(home, 'out');
    await saveAsSaelens(loaded, converted);
    expect((await readSaeFolder(converted)).config.metadata.converted_from).toMatchObject({
      repo_id: 'someone/my-saes',
    });
  });
});

describe("SAELens's full release list", () => {
  const yamlCounts = { releases: 73, saes: 4500 };

  it('has every release and SAE of pretrained_saes.yaml, with where it came from', () => {
    const fromSaelens = SAE_RELEASES.filter((r) => r.name !== 'pythia-70m-sparsify-32k');
    expect(fromSaelens).toHaveLength(yamlCounts.releases);
    expect(fromSaelens.reduce((n, r) => n + r.saes!.length, 0)).toBe(yamlCounts.saes);
    expect(RELEASES_SOURCE.from).toMatch(/^jbloomAus\/SAELens@[0-9a-f]{40} \(6\.18\.0\)$/);
    expect(RELEASES_SOURCE.generator).toBe('tools/saelens-releases/generate.ts');
  });

  it('resolves every RELEASE/SAE_ID to its repository and path', () => {
    for (const release of SAE_RELEASES) {
      for (const sae of release.saes ?? []) {
        const at = releaseLocation(`${release.name}/${sae.id}`)!;
        expect(at.repoId).toBe(release.repoId);
        expect(at.path).toBe(sae.path);
      }
    }
    expect(releaseLocation('gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical')).toMatchObject({
      repoId: 'google/gemma-scope-2b-pt-res',
      path: 'layer_12/width_16k/average_l0_82',
    });
    expect(releaseLocation('gpt2-small-mlp-tm/blocks.3.hook_mlp_out')).toMatchObject({
      repoId: 'tommmcgrath/gpt2-small-mlp-out-saes',
      path: 'sae_group_gpt2_blocks.3.hook_mlp_out_24576:v0',
    });
    expect(findRelease('gpt2-small-mlp-tm')!.processing).toBe('center_writing_weights');
    expect(releaseLocation('jbloom/GPT2-Small-SAEs-Reformatted/blocks.8.hook_resid_pre')).toBeUndefined();
  });

  it('says "unknown release" with the nearest names, and names the files of a release saeflow cannot read', async () => {
    const home = await freshHome();
    const misspelt = await failure(
      loadSae('gpt2-small-res-jbb/blocks.8.hook_resid_pre', { env: { HF_HOME: home } }),
    );
    expect(misspelt).toMatch(/unknown release 'gpt2-small-res-jbb'; nearest: gpt2-small-res-jb\b/);
    expect(nearestReleases('gemma-scope-2b-res')).toContain('gemma-scope-2b-pt-res');
    const llama = findRelease('llama_scope_lxr_8x')!;
    const unreadable = await failure(
      loadSae(`llama_scope_lxr_8x/${llama.saes![0]!.id}`, { env: { HF_HOME: home, HF_HUB_OFFLINE: '1' } }),
    );
    expect(unreadable).toContain("SAELens's 'llama_scope' conversion, which saeflow does not read");
    expect(unreadable).toContain(`${llama.repoId}/${llama.saes![0]!.path}`);
  });
});
