import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readDocuments, resolveDataset } from '../src/stages/text/index.js';

const COMMIT = 'c0ffee'.repeat(6) + 'c0ff';
const saved = { HF_HOME: process.env.HF_HOME, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE };
afterEach(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe('Hugging Face dataset ids', () => {
  it('resolve to the Parquet files of the local cache snapshot, offline', async () => {
    const home = mkdtempSync(path.join(tmpdir(), 'saeflow-hfhome-'));
    const repo = path.join(home, 'hub', 'datasets--someone--tiny-text');
    const snapshot = path.join(repo, 'snapshots', COMMIT);
    mkdirSync(path.join(snapshot, 'data'), { recursive: true });
    mkdirSync(path.join(repo, 'refs'), { recursive: true });
    writeFileSync(path.join(repo, 'refs', 'main'), COMMIT);
    copyFileSync(
      'test/fixtures/text/data/text-snappy.parquet',
      path.join(snapshot, 'data', 'train-00000.parquet'),
    );
    process.env.HF_HOME = home;
    process.env.HF_HUB_OFFLINE = '1';

    const d = await resolveDataset('someone/tiny-text');
    expect(d).toMatchObject({ kind: 'files', spec: 'someone/tiny-text' });
    expect(d.kind === 'files' && d.files.map((f) => path.basename(f))).toEqual(['train-00000.parquet']);
    const docs = [];
    for await (const doc of readDocuments('someone/tiny-text')) docs.push(doc);
    expect(docs.length).toBe(7);
  });

  it('explain where they looked when the dataset is not cached and the hub is off', async () => {
    process.env.HF_HOME = mkdtempSync(path.join(tmpdir(), 'saeflow-hfhome-'));
    process.env.HF_HUB_OFFLINE = '1';
    await expect(resolveDataset('NeelNanda/pile-10k')).rejects.toThrow(
      /dataset 'NeelNanda\/pile-10k' has no Parquet files in the Hugging Face cache.*HF_HUB_OFFLINE/,
    );
  });
});
