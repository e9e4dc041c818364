import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../src/pipeline/errors.js';
import {
  hfEndpoint,
  hfHome,
  hfHubCache,
  isHubOffline,
  modelRepoCandidates,
  repoFolderName,
  resolveDatasetFiles,
  resolveModel,
  resolveModelDir,
  sha256File,
} from '../src/hub/index.js';
import type { DownloadProgress } from '../src/hub/index.js';
import { gitBlobSha1, sha256Hex, startFakeHub } from './hub-fake-server.js';
import type { FakeHub, FakeRepo } from './hub-fake-server.js';

const COMMIT_A = 'a'.repeat(40);
const COMMIT_B = 'b'.repeat(40);
const COMMIT_C = 'c'.repeat(40);
const FILES = ['config.json', 'model.safetensors'];

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'saeflow-hub-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
async function freshHome(): Promise<string> {
  const home = join(root, `home-${counter++}`);
  await mkdir(home, { recursive: true });
  return home;
}

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Writes a repository into a hub cache exactly as huggingface_hub lays it out. */
async function populateCache(
  cache: string,
  type: 'model' | 'dataset',
  repoId: string,
  commit: string,
  files: Record<string, Uint8Array | { content: Uint8Array; lfs: true }>,
  refs: Record<string, string> = { main: commit },
): Promise<string> {
  const repoDir = join(cache, repoFolderName(repoId, type));
  await mkdir(join(repoDir, 'blobs'), { recursive: true });
  for (const [path, file] of Object.entries(files)) {
    const content = file instanceof Uint8Array ? file : file.content;
    const etag = file instanceof Uint8Array ? gitBlobSha1(content) : sha256Hex(content);
    const blob = join(repoDir, 'blobs', etag);
    await writeFile(blob, content);
    const pointer = join(repoDir, 'snapshots', commit, ...path.split('/'));
    await mkdir(dirname(pointer), { recursive: true });
    await symlink(relative(dirname(pointer), blob), pointer);
  }
  for (const [ref, c] of Object.entries(refs)) {
    await mkdir(dirname(join(repoDir, 'refs', ref)), { recursive: true });
    await writeFile(join(repoDir, 'refs', ref), c);
  }
  return join(repoDir, 'snapshots', commit);
}

describe('environment', () => {
  it('finds HF_HOME and the hub cache the way huggingface_hub does', () => {
    expect(hfHome({})).toBe(join(homedir(), '.cache', 'huggingface'));
    expect(hfHome({ XDG_CACHE_HOME: '/xdg' })).toBe('/xdg/huggingface');
    expect(hfHome({ HF_HOME: '/hf', XDG_CACHE_HOME: '/xdg' })).toBe('/hf');
    expect(hfHome({ HF_HOME: '~/hf' })).toBe(join(homedir(), 'hf'));
    expect(hfHubCache({ HF_HOME: '/hf' })).toBe('/hf/hub');
    expect(hfHubCache({ HF_HOME: '/hf', HUGGINGFACE_HUB_CACHE: '/legacy' })).toBe('/legacy');
    expect(hfHubCache({ HF_HOME: '/hf', HUGGINGFACE_HUB_CACHE: '/legacy', HF_HUB_CACHE: '/new' })).toBe(
      '/new',
    );
    expect(hfHubCache({ HF_HOME: '' })).toBe(join(homedir(), '.cache', 'huggingface', 'hub'));
  });

  it('reads the endpoint and offline mode', () => {
    expect(hfEndpoint({})).toBe('https://huggingface.co');
    expect(hfEndpoint({ HF_ENDPOINT: 'http://127.0.0.1:9/' })).toBe('http://127.0.0.1:9');
    for (const v of ['1', 'true', 'YES', 'on']) expect(isHubOffline({ HF_HUB_OFFLINE: v })).toBe(true);
    for (const v of ['0', 'false', '']) expect(isHubOffline({ HF_HUB_OFFLINE: v })).toBe(false);
    expect(isHubOffline({ TRANSFORMERS_OFFLINE: '1' })).toBe(true);
    expect(isHubOffline({})).toBe(false);
  });

  it('maps GPT-2 aliases to their current repositories and legacy cache names', () => {
    expect(modelRepoCandidates('gpt2')).toEqual({
      repoId: 'openai-community/gpt2',
      cacheIds: ['openai-community/gpt2', 'gpt2'],
    });
    expect(modelRepoCandidates('openai-community/gpt2-xl').cacheIds).toEqual([
      'openai-community/gpt2-xl',
      'gpt2-xl',
    ]);
    expect(modelRepoCandidates('distilgpt2').repoId).toBe('distilbert/distilgpt2');
    expect(modelRepoCandidates('org/other')).toEqual({ repoId: 'org/other', cacheIds: ['org/other'] });
    expect(repoFolderName('openai-community/gpt2', 'model')).toBe('models--openai-community--gpt2');
    expect(repoFolderName('NeelNanda/pile-10k', 'dataset')).toBe('datasets--NeelNanda--pile-10k');
  });
});

describe('resolveModelDir without network', () => {
  const config = Buffer.from('{"n_layer": 2}');
  const weights = bytes(1000, 1);

  it('uses a local directory as is', async () => {
    const dir = join(await freshHome(), 'my-model');
    await mkdir(dir);
    await writeFile(join(dir, 'config.json'), config);
    await writeFile(join(dir, 'model.safetensors'), weights);
    const got = await resolveModel(dir, { files: FILES, env: { HF_HUB_OFFLINE: '1' } });
    expect(got).toEqual({ dir, source: 'local' });
    await rm(join(dir, 'model.safetensors'));
    await expect(resolveModelDir(dir, { files: FILES })).rejects.toThrow(
      /model directory .*my-model lacks model\.safetensors/,
    );
    await expect(resolveModelDir('./no/such/dir', { files: FILES })).rejects.toThrow(
      /model directory not found/,
    );
  });

  it('finds the snapshot refs/main points to, under the canonical name', async () => {
    const home = await freshHome();
    const snapshot = await populateCache(join(home, 'hub'), 'model', 'openai-community/gpt2', COMMIT_A, {
      'config.json': config,
      'model.safetensors': { content: weights, lfs: true },
    });
    const env = { HF_HOME: home, HF_HUB_OFFLINE: '1' };
    const got = await resolveModel('gpt2', { files: FILES, env });
    expect(got).toEqual({
      dir: snapshot,
      source: 'cache',
      repoId: 'openai-community/gpt2',
      commit: COMMIT_A,
    });
    expect(await readFile(join(got.dir, 'model.safetensors'))).toEqual(Buffer.from(weights));
    expect(await resolveModelDir('openai-community/gpt2', { files: FILES, env })).toBe(snapshot);
  });

  it('finds a legacy models--gpt2 cache, an explicit commit, and honours HF_HUB_CACHE', async () => {
    const cache = join(await freshHome(), 'elsewhere');
    const snapshot = await populateCache(cache, 'model', 'gpt2', COMMIT_B, {
      'config.json': config,
      'model.safetensors': weights,
    });
    const env = { HF_HOME: '/nonexistent', HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' };
    expect(await resolveModelDir('gpt2', { files: FILES, env })).toBe(snapshot);
    expect(await resolveModelDir('openai-community/gpt2', { files: FILES, env })).toBe(snapshot);
    expect(await resolveModelDir('gpt2', { files: FILES, env, revision: COMMIT_B })).toBe(snapshot);
    await expect(resolveModelDir('gpt2', { files: FILES, env, revision: 'v2' })).rejects.toThrow(
      /not in the Hugging Face cache/,
    );
  });

  it('treats a dangling snapshot link as missing and explains how to get the model', async () => {
    const home = await freshHome();
    const cache = join(home, 'hub');
    const snapshot = await populateCache(cache, 'model', 'openai-community/gpt2', COMMIT_A, {
      'config.json': config,
      'model.safetensors': weights,
    });
    await rm(join(cache, 'models--openai-community--gpt2', 'blobs', gitBlobSha1(weights)));
    expect((await lstat(join(snapshot, 'model.safetensors'))).isSymbolicLink()).toBe(true);
    const err = await resolveModelDir('gpt2', {
      files: FILES,
      env: { HF_HOME: home, HF_HUB_OFFLINE: '1' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    const message = (err as Error).message;
    expect(message).toContain(join(cache, 'models--openai-community--gpt2'));
    expect(message).toContain(join(cache, 'models--gpt2'));
    expect(message).toContain('HF_HUB_OFFLINE');
    expect(message).toContain('--model /path/to/dir');
    await expect(
      resolveModelDir('gpt2', { files: FILES, allowDownload: false, env: { HF_HOME: home } }),
    ).rejects.toThrow(/downloads are disabled/);
  });

  it('refuses names that are neither directories nor repository ids', async () => {
    await expect(resolveModelDir('bad name!', { files: FILES })).rejects.toThrow(
      /not a Hugging Face model id/,
    );
    await expect(resolveModelDir('gpt2', { files: ['../etc/passwd'] })).rejects.toThrow(
      /not a valid file path/,
    );
    await expect(
      resolveModelDir('gpt2', { files: FILES, revision: '../main', env: { HF_HUB_OFFLINE: '1' } }),
    ).rejects.toThrow(/not a valid revision/);
  });
});

describe('downloads from a hub', () => {
  const config = Buffer.from('{"model_type": "gpt2", "n_layer": 2}\n');
  const weights = bytes(300_000, 7);
  const weightsV2 = bytes(2_000, 8);
  const tokenizer = Buffer.from('{"version": "1.0"}');
  let hub: FakeHub;

  beforeEach(async () => {
    hub = await startFakeHub([
      {
        type: 'model',
        id: 'openai-community/gpt2',
        refs: { main: COMMIT_A, v2: COMMIT_B },
        commits: {
          [COMMIT_A]: {
            'config.json': { content: config },
            'model.safetensors': { content: weights, lfs: true },
            'sub/dir/tokenizer.json': { content: tokenizer },
          },
          [COMMIT_B]: {
            'config.json': { content: config },
            'model.safetensors': { content: weightsV2, lfs: true },
          },
        },
      },
      {
        type: 'model',
        id: 'new-org/renamed',
        refs: { main: COMMIT_C },
        commits: {
          [COMMIT_C]: {
            'config.json': { content: config },
            'model.safetensors': { content: weightsV2, lfs: true },
          },
        },
        renamedFrom: ['old-org/renamed'],
      },
    ]);
  });
  afterEach(async () => {
    await hub.close();
  });

  const envFor = (home: string, extra: Record<string, string> = {}) => ({
    HF_HOME: home,
    HF_ENDPOINT: hub.endpoint,
    ...extra,
  });
  const fast = { retryDelayMs: 0 };

  it('downloads into the cache layout, reports progress, then serves from the cache without network', async () => {
    const home = await freshHome();
    const progress: DownloadProgress[] = [];
    const got = await resolveModel('gpt2', {
      files: [...FILES, 'sub/dir/tokenizer.json'],
      env: envFor(home),
      onProgress: (p) => progress.push({ ...p }),
      client: fast,
    });
    const repoDir = join(home, 'hub', 'models--openai-community--gpt2');
    expect(got).toEqual({
      dir: join(repoDir, 'snapshots', COMMIT_A),
      source: 'download',
      repoId: 'openai-community/gpt2',
      commit: COMMIT_A,
    });
    expect((await readFile(join(repoDir, 'refs', 'main'), 'utf8')).trim()).toBe(COMMIT_A);
    expect((await readdir(join(repoDir, 'blobs'))).sort()).toEqual(
      [gitBlobSha1(config), sha256Hex(weights), gitBlobSha1(tokenizer)].sort(),
    );
    // Relative symlinks, so the cache survives being moved, exactly like huggingface_hub's.
    expect(await readlink(join(got.dir, 'model.safetensors'))).toBe(`../../blobs/${sha256Hex(weights)}`);
    expect(await readlink(join(got.dir, 'sub', 'dir', 'tokenizer.json'))).toBe(
      `../../../../blobs/${gitBlobSha1(tokenizer)}`,
    );
    expect(await sha256File(join(got.dir, 'model.safetensors'))).toBe(sha256Hex(weights));
    expect(await readFile(join(got.dir, 'sub', 'dir', 'tokenizer.json'))).toEqual(tokenizer);

    const weightProgress = progress.filter((p) => p.file === 'model.safetensors');
    expect(weightProgress.length).toBeGreaterThan(0);
    expect(weightProgress.at(-1)).toEqual({
      repoId: 'openai-community/gpt2',
      file: 'model.safetensors',
      downloadedBytes: weights.length,
      totalBytes: weights.length,
    });
    for (let i = 1; i < weightProgress.length; i++) {
      expect(weightProgress[i]!.downloadedBytes).toBeGreaterThanOrEqual(
        weightProgress[i - 1]!.downloadedBytes,
      );
    }
    // Files after the first are fetched at the commit the first one resolved to.
    expect(
      hub.log.some(
        (r) =>
          r.method === 'HEAD' && r.url === `/openai-community/gpt2/resolve/${COMMIT_A}/model.safetensors`,
      ),
    ).toBe(true);

    hub.log.length = 0;
    const again = await resolveModel('gpt2', { files: FILES, env: envFor(home) });
    expect(again.source).toBe('cache');
    expect(hub.log).toEqual([]);
  });

  it('downloads another revision next to the first and records its ref', async () => {
    const home = await freshHome();
    await resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast });
    const dir = await resolveModelDir('gpt2', {
      files: FILES,
      revision: 'v2',
      env: envFor(home),
      client: fast,
    });
    const repoDir = join(home, 'hub', 'models--openai-community--gpt2');
    expect(dir).toBe(join(repoDir, 'snapshots', COMMIT_B));
    expect(await readFile(join(repoDir, 'refs', 'v2'), 'utf8')).toBe(COMMIT_B);
    expect(await readFile(join(dir, 'model.safetensors'))).toEqual(Buffer.from(weightsV2));
    // config.json is the same blob in both commits: linked, not downloaded again.
    expect(hub.log.filter((r) => r.method === 'GET' && r.url.endsWith('/config.json'))).toHaveLength(1);
  });

  it('follows the relative redirect of a renamed repository', async () => {
    const home = await freshHome();
    const got = await resolveModel('old-org/renamed', { files: FILES, env: envFor(home), client: fast });
    expect(got.commit).toBe(COMMIT_C);
    expect(await readFile(join(got.dir, 'model.safetensors'))).toEqual(Buffer.from(weightsV2));
    expect(hub.log[0]).toMatchObject({ method: 'HEAD', url: '/old-org/renamed/resolve/main/config.json' });
    expect(hub.log[1]).toMatchObject({ method: 'HEAD', url: '/new-org/renamed/resolve/main/config.json' });
  });

  it('resumes an interrupted transfer with a Range request', async () => {
    const home = await freshHome();
    hub.faults.cut.set('model.safetensors', { bytes: 100_000, times: 2 });
    const dir = await resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast });
    expect(await sha256File(join(dir, 'model.safetensors'))).toBe(sha256Hex(weights));
    const gets = hub.log.filter((r) => r.method === 'GET' && r.url.startsWith('/cdn/'));
    expect(gets.map((r) => r.range)).toEqual([undefined, 'bytes=100000-', 'bytes=200000-']);
  });

  it('resumes a .incomplete file left by an earlier run', async () => {
    const home = await freshHome();
    const blobs = join(home, 'hub', 'models--openai-community--gpt2', 'blobs');
    await mkdir(blobs, { recursive: true });
    await writeFile(join(blobs, `${sha256Hex(weights)}.incomplete`), weights.subarray(0, 123_456));
    const dir = await resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast });
    expect(await sha256File(join(dir, 'model.safetensors'))).toBe(sha256Hex(weights));
    expect(
      hub.log.filter((r) => r.url.startsWith('/cdn/') && r.method === 'GET').map((r) => r.range),
    ).toEqual(['bytes=123456-']);
    expect((await readdir(blobs)).filter((f) => f.endsWith('.incomplete'))).toEqual([]);
  });

  it('starts over when the server ignores the Range header', async () => {
    const home = await freshHome();
    const blobs = join(home, 'hub', 'models--openai-community--gpt2', 'blobs');
    await mkdir(blobs, { recursive: true });
    await writeFile(join(blobs, `${sha256Hex(weights)}.incomplete`), weights.subarray(0, 5000));
    hub.faults.ignoreRange = true;
    const dir = await resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast });
    expect(await sha256File(join(dir, 'model.safetensors'))).toBe(sha256Hex(weights));
  });

  it('rejects a download whose sha256 does not match, leaving nothing in the cache', async () => {
    const home = await freshHome();
    hub.faults.corrupt.add('model.safetensors');
    const err = await resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `model\\.safetensors of model openai-community/gpt2 .*sha256 mismatch \\(expected ${sha256Hex(weights)}, got [0-9a-f]{64}\\)`,
      ),
    );
    const repoDir = join(home, 'hub', 'models--openai-community--gpt2');
    expect(await readdir(join(repoDir, 'blobs'))).toEqual([gitBlobSha1(config)]);
    expect(await readdir(join(repoDir, 'snapshots', COMMIT_A))).toEqual(['config.json']);
    // Fixed upstream: the next run succeeds.
    hub.faults.corrupt.clear();
    const dir = await resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast });
    expect(await sha256File(join(dir, 'model.safetensors'))).toBe(sha256Hex(weights));
  });

  it('gives up after repeated failures without progress, keeping the partial file for the next run', async () => {
    const home = await freshHome();
    const blobs = join(home, 'hub', 'models--openai-community--gpt2', 'blobs');
    await mkdir(blobs, { recursive: true });
    const partial = join(blobs, `${sha256Hex(weights)}.incomplete`);
    await writeFile(partial, weights.subarray(0, 1000));
    hub.faults.cut.set('model.safetensors', { bytes: 0, times: 100 });
    const options = { files: FILES, env: envFor(home), client: { retryDelayMs: 0, retries: 2 } };
    const err = await resolveModelDir('gpt2', options).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/download failed after 3 attempts without progress/);
    expect(hub.log.filter((r) => r.url.startsWith('/cdn/'))).toHaveLength(3);
    expect((await readdir(blobs)).filter((f) => f.endsWith('.incomplete'))).toEqual([
      `${sha256Hex(weights)}.incomplete`,
    ]);
    expect(await readFile(partial)).toEqual(Buffer.from(weights.subarray(0, 1000)));

    hub.faults.cut.clear();
    hub.log.length = 0;
    const dir = await resolveModelDir('gpt2', options);
    expect(await sha256File(join(dir, 'model.safetensors'))).toBe(sha256Hex(weights));
    expect(
      hub.log.filter((r) => r.url.startsWith('/cdn/') && r.method === 'GET').map((r) => r.range),
    ).toEqual(['bytes=1000-']);
  });

  it('adopts the partial file of a process that died, and never shares one between live processes', async () => {
    const home = await freshHome();
    const blobs = join(home, 'hub', 'models--openai-community--gpt2', 'blobs');
    await mkdir(blobs, { recursive: true });
    const sha = sha256Hex(weights);
    await writeFile(join(blobs, `${sha}.incomplete`), weights.subarray(0, 500));
    await writeFile(join(blobs, `${sha}.4194305-0badf00d.incomplete`), weights.subarray(0, 2000)); // no such pid
    await writeFile(join(blobs, `${sha}.${process.pid}-12345678.incomplete`), weights.subarray(0, 3000)); // alive: not ours to take
    const dir = await resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast });
    expect(await sha256File(join(dir, 'model.safetensors'))).toBe(sha);
    expect(
      hub.log.filter((r) => r.url.startsWith('/cdn/') && r.method === 'GET').map((r) => r.range),
    ).toEqual(['bytes=2000-']);
    expect((await readdir(blobs)).filter((f) => f.endsWith('.incomplete'))).toEqual([
      `${sha}.${process.pid}-12345678.incomplete`,
    ]);
  });

  it('lets two concurrent resolutions of the same model both succeed', async () => {
    const home = await freshHome();
    hub.faults.cut.set('model.safetensors', { bytes: 50_000, times: 2 });
    const [a, b] = await Promise.all([
      resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast }),
      resolveModelDir('gpt2', { files: FILES, env: envFor(home), client: fast }),
    ]);
    expect(a).toBe(b);
    expect(await sha256File(join(a, 'model.safetensors'))).toBe(sha256Hex(weights));
    const blobs = join(home, 'hub', 'models--openai-community--gpt2', 'blobs');
    expect((await readdir(blobs)).sort()).toEqual([gitBlobSha1(config), sha256Hex(weights)].sort());
  });

  it('names the missing file, revision or repository', async () => {
    const home = await freshHome();
    const env = envFor(home);
    await expect(resolveModelDir('gpt2', { files: ['pytorch_model.safetensors'], env })).rejects.toThrow(
      /pytorch_model\.safetensors of model openai-community\/gpt2 at revision main: file not found in the repository/,
    );
    await expect(resolveModelDir('gpt2', { files: FILES, revision: 'v9', env })).rejects.toThrow(
      /revision not found/,
    );
    await expect(resolveModelDir('nobody/nothing', { files: FILES, env })).rejects.toThrow(
      /repository not found/,
    );
  });

  it('refuses a hostile etag instead of writing outside the cache', async () => {
    const home = await freshHome();
    hub.faults.headers.set('config.json', { etag: '"../../../escape"' });
    await expect(resolveModelDir('gpt2', { files: FILES, env: envFor(home) })).rejects.toThrow(
      /malformed X-Repo-Commit .* or ETag/,
    );
    expect(await readdir(home)).toEqual([]);
  });

  it('sends HF_TOKEN to the hub but not to the CDN', async () => {
    const home = await freshHome();
    await resolveModelDir('gpt2', { files: FILES, env: envFor(home, { HF_TOKEN: 'hf_test' }) });
    const [cdn, hubRequests] = [
      hub.log.filter((r) => r.url.startsWith('/cdn/')),
      hub.log.filter((r) => !r.url.startsWith('/cdn/')),
    ];
    expect(cdn.length).toBeGreaterThan(0);
    expect(cdn.every((r) => r.authorization === undefined)).toBe(true);
    expect(hubRequests.length).toBeGreaterThan(0);
    expect(hubRequests.every((r) => r.authorization === 'Bearer hf_test')).toBe(true);
  });

  it('explains an unreachable hub', async () => {
    const home = await freshHome();
    await hub.close();
    const err = await resolveModelDir('gpt2', { files: FILES, env: envFor(home) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(
      /not in the Hugging Face cache .* cannot reach the Hugging Face hub at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
    );
    expect((err as Error).message).toContain('--model /path/to/dir');
    hub = await startFakeHub([]); // for afterEach
  });
});

describe('resolveDatasetFiles', () => {
  const train = bytes(5000, 11);
  const test = bytes(700, 12);
  const converted = bytes(900, 13);
  let hub: FakeHub;

  const repos: FakeRepo[] = [
    {
      type: 'dataset',
      id: 'NeelNanda/pile-10k',
      refs: { main: COMMIT_A },
      commits: {
        [COMMIT_A]: {
          'README.md': { content: Buffer.from('# pile-10k') },
          'data/train-00000-of-00001.parquet': { content: train, lfs: true },
          'data/test-00000-of-00001.parquet': { content: test, lfs: true },
          '.gitattributes': { content: Buffer.from('*.parquet filter=lfs') },
        },
      },
    },
    {
      type: 'dataset',
      id: 'someone/jsonl-only',
      refs: { main: COMMIT_B, 'refs/convert/parquet': COMMIT_C },
      commits: {
        [COMMIT_B]: { 'data.jsonl': { content: Buffer.from('{"text": "hi"}\n') } },
        [COMMIT_C]: { 'default/train/0000.parquet': { content: converted, lfs: true } },
      },
    },
  ];

  beforeEach(async () => {
    hub = await startFakeHub(repos);
    hub.faults.treePageSize = 2; // exercise Link-header pagination
  });
  afterEach(async () => {
    await hub.close();
  });

  it('lists Parquet files through the paginated tree API and downloads them into the cache', async () => {
    const home = await freshHome();
    const env = { HF_HOME: home, HF_ENDPOINT: hub.endpoint };
    const got = await resolveDatasetFiles('NeelNanda/pile-10k', { env });
    const snapshot = join(home, 'hub', 'datasets--NeelNanda--pile-10k', 'snapshots', COMMIT_A);
    expect(got).toEqual({
      repoId: 'NeelNanda/pile-10k',
      revision: 'main',
      commit: COMMIT_A,
      dir: snapshot,
      files: [
        join(snapshot, 'data', 'test-00000-of-00001.parquet'),
        join(snapshot, 'data', 'train-00000-of-00001.parquet'),
      ],
      source: 'download',
    });
    expect(await readFile(got.files[1]!)).toEqual(Buffer.from(train));
    expect(
      hub.log.filter((r) => r.url.startsWith('/api/datasets/NeelNanda/pile-10k/tree/main')).length,
    ).toBeGreaterThan(1);
    expect(hub.log.some((r) => r.url.includes('README'))).toBe(false);

    const offline = await resolveDatasetFiles('NeelNanda/pile-10k', { env: { ...env, HF_HUB_OFFLINE: '1' } });
    expect(offline).toEqual({ ...got, source: 'cache' });
    const sample = await resolveDatasetFiles('NeelNanda/pile-10k', {
      env: { ...env, HF_HUB_OFFLINE: '1' },
      maxFiles: 1,
    });
    expect(sample.files).toEqual([got.files[0]]);
  });

  it("falls back to the hub's Parquet conversion when main has no Parquet files", async () => {
    const home = await freshHome();
    const env = { HF_HOME: home, HF_ENDPOINT: hub.endpoint };
    const got = await resolveDatasetFiles('someone/jsonl-only', { env });
    expect(got.revision).toBe('refs/convert/parquet');
    expect(got.commit).toBe(COMMIT_C);
    expect(got.files).toEqual([join(got.dir, 'default', 'train', '0000.parquet')]);
    const repoDir = join(home, 'hub', 'datasets--someone--jsonl-only');
    expect(await readFile(join(repoDir, 'refs', 'refs', 'convert', 'parquet'), 'utf8')).toBe(COMMIT_C);
    expect(
      hub.log.some((r) => r.url.startsWith('/datasets/someone/jsonl-only/resolve/refs%2Fconvert%2Fparquet/')),
    ).toBe(true);
    const offline = await resolveDatasetFiles('someone/jsonl-only', { env: { ...env, HF_HUB_OFFLINE: '1' } });
    expect(offline.files).toEqual(got.files);
    await expect(resolveDatasetFiles('someone/jsonl-only', { env, revision: 'main' })).rejects.toThrow(
      /has no Parquet files at revision main/,
    );
  });

  it('uses a cache filled by Python tools, and says what to do when there is none', async () => {
    const home = await freshHome();
    const snapshot = await populateCache(join(home, 'hub'), 'dataset', 'org/cached', COMMIT_B, {
      'train.parquet': { content: train, lfs: true },
      'notes.txt': Buffer.from('x'),
    });
    const env = { HF_HOME: home, HF_HUB_OFFLINE: '1' };
    expect((await resolveDatasetFiles('org/cached', { env })).files).toEqual([
      join(snapshot, 'train.parquet'),
    ]);
    const err = await resolveDatasetFiles('org/absent', { env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(join(home, 'hub', 'datasets--org--absent', 'snapshots'));
    expect((err as Error).message).toMatch(/HF_HUB_OFFLINE is set.*pass a local Parquet/);
  });

  it('falls back to the cache when the hub is unreachable', async () => {
    const home = await freshHome();
    const snapshot = await populateCache(join(home, 'hub'), 'dataset', 'org/cached', COMMIT_B, {
      'a.parquet': train,
    });
    const env = { HF_HOME: home, HF_ENDPOINT: 'http://127.0.0.1:9' };
    expect((await resolveDatasetFiles('org/cached', { env })).files).toEqual([join(snapshot, 'a.parquet')]);
    await expect(resolveDatasetFiles('org/absent', { env })).rejects.toThrow(
      /cannot reach the Hugging Face hub/,
    );
  });

  it('validates its inputs', async () => {
    await expect(resolveDatasetFiles('not a dataset')).rejects.toThrow(/not a valid Hugging Face dataset id/);
    await expect(resolveDatasetFiles('a/b', { maxFiles: 0 })).rejects.toThrow(/maxFiles/);
  });
});

it('hashes files by streaming', async () => {
  const path = join(root, 'hash-me');
  const data = bytes(3_000_000, 5);
  await writeFile(path, data);
  expect(await sha256File(path)).toBe(createHash('sha256').update(data).digest('hex'));
  await expect(sha256File(join(root, 'absent'))).rejects.toThrow(UserError);
});
