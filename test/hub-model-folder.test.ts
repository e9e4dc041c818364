/**
 * Models of any family from the hub: config.json, sharded safetensors through their index, and the
 * tokenizer files, downloaded into the Hugging Face cache layout and served from it afterwards.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveModelFolder } from '../src/hub/model-folder.js';
import { loadModel } from '../src/model/index.js';
import { startFakeHub } from './hub-fake-server.js';
import type { FakeFile, FakeHub } from './hub-fake-server.js';

const SHARDED = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'fixtures',
  'families',
  'llama',
  'model-sharded',
);
const COMMIT = 'd'.repeat(40);

describe('resolveModelFolder', () => {
  let hub: FakeHub;
  let home: string;
  const files: Record<string, FakeFile> = {};

  beforeEach(async () => {
    for (const f of await readdir(SHARDED)) {
      files[f] = { content: await readFile(path.join(SHARDED, f)), lfs: f.endsWith('.safetensors') };
    }
    hub = await startFakeHub([
      { type: 'model', id: 'meta-llama/tiny', refs: { main: COMMIT }, commits: { [COMMIT]: files } },
    ]);
    home = await mkdtemp(path.join(tmpdir(), 'saeflow-hub-folder-'));
  });
  afterEach(async () => {
    await hub.close();
    await rm(home, { recursive: true, force: true });
  });

  it('downloads config, index, every shard and the tokenizer files, then loads from the cache offline', async () => {
    const env = { HF_HOME: home, HF_ENDPOINT: hub.endpoint };
    const got = await resolveModelFolder('meta-llama/tiny', { env, client: { retryDelayMs: 0 } });
    expect(got.source).toBe('download');
    expect(got.dir).toBe(path.join(home, 'hub', 'models--meta-llama--tiny', 'snapshots', COMMIT));
    expect((await readdir(got.dir)).sort()).toEqual(Object.keys(files).sort());
    const model = await loadModel(got.dir);
    expect(model.config.family).toBe('llama');

    const again = await resolveModelFolder('meta-llama/tiny', {
      env: { HF_HOME: home, HF_HUB_OFFLINE: '1' },
    });
    expect(again).toMatchObject({ source: 'cache', dir: got.dir, commit: COMMIT });
  });

  it('a cache with the index but a missing shard is not complete: offline, it says what to do', async () => {
    const env = { HF_HOME: home, HF_ENDPOINT: hub.endpoint };
    const got = await resolveModelFolder('meta-llama/tiny', { env, client: { retryDelayMs: 0 } });
    await rm(path.join(got.dir, 'model-00002-of-00002.safetensors'));
    await expect(
      resolveModelFolder('meta-llama/tiny', { env: { HF_HOME: home, HF_HUB_OFFLINE: '1' } }),
    ).rejects.toThrow(
      /not in the Hugging Face cache, and HF_HUB_OFFLINE is set.*model.safetensors.index.json and its shards/,
    );
    // Online, the missing shard is fetched again.
    const fixed = await resolveModelFolder('meta-llama/tiny', { env, client: { retryDelayMs: 0 } });
    expect((await readdir(fixed.dir)).sort()).toEqual(Object.keys(files).sort());
  });

  it('an index naming a shard the repository lacks is refused by name', async () => {
    await hub.close();
    const broken = { ...files };
    delete broken['model-00002-of-00002.safetensors'];
    hub = await startFakeHub([
      { type: 'model', id: 'org/broken', refs: { main: COMMIT }, commits: { [COMMIT]: broken } },
    ]);
    await expect(
      resolveModelFolder('org/broken', {
        env: { HF_HOME: home, HF_ENDPOINT: hub.endpoint },
        client: { retryDelayMs: 0 },
      }),
    ).rejects.toThrow(/lists shards the repository lacks: model-00002-of-00002.safetensors/);
  });
});
