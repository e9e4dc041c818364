/**
 * The Gemma Scope canonical rule (src/eval/nearest-l0.ts) and the release candidates
 * (src/sae-formats/gemma-scope-release.ts): the rule reproduces SAELens's gemma-scope-*-canonical lists from
 * the folders' average L0s, keeps dominated SAEs out, and says which L0 it went by.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { chooseNearestL0, chooseNearestL0ByGroup, nearestL0Rule } from '../src/eval/nearest-l0.js';
import type { L0Candidate } from '../src/eval/nearest-l0.js';
import {
  gemmaScopeGroup,
  gemmaScopeRelease,
  gemmaScopeReleaseNames,
  listGemmaScopeFolder,
  parseGemmaScopeId,
  releaseCandidates,
  saelensCanonical,
  selectIds,
} from '../src/sae-formats/gemma-scope-release.js';
import { UserError } from '../src/pipeline/errors.js';
import { tempDir } from './eval-helpers.js';

const cand = (name: string, over: Partial<L0Candidate>): L0Candidate => ({
  name,
  group: 'g',
  l0: null,
  releaseL0: null,
  deltaLoss: null,
  fvu: null,
  ...over,
});

describe('Gemma Scope release candidates', () => {
  it('parses folder ids and filters them by layer and width', () => {
    expect(parseGemmaScopeId('layer_12/width_16k/average_l0_82')).toEqual({
      id: 'layer_12/width_16k/average_l0_82',
      layer: 12,
      width: '16k',
      averageL0: 82,
    });
    expect(parseGemmaScopeId('layer_12/width_16k/canonical')).toBeUndefined();
    expect(parseGemmaScopeId('embedding/width_4k/average_l0_6')).toBeUndefined();
    const ids = [
      'layer_1/width_16k/average_l0_5',
      'layer_2/width_16k/average_l0_9',
      'layer_2/width_65k/average_l0_9',
    ].map((i) => parseGemmaScopeId(i)!);
    expect(selectIds(ids, [2], ['16k']).map((i) => i.id)).toEqual(['layer_2/width_16k/average_l0_9']);
    expect(selectIds(ids, [], ['width_65k']).map((i) => i.id)).toEqual(['layer_2/width_65k/average_l0_9']);
    expect(selectIds(ids, [], [])).toHaveLength(3);
    expect(gemmaScopeGroup(ids[0]!)).toBe('layer_1/width_16k');
  });

  it("knows SAELens's canonical folders and refuses releases without average_l0 folders", () => {
    expect(saelensCanonical('gemma-scope-2b-pt-res').get('layer_12/width_16k')).toBe(
      'layer_12/width_16k/average_l0_82',
    );
    expect(gemmaScopeReleaseNames()).toContain('gemma-scope-2b-pt-transcoders');
    expect(gemmaScopeReleaseNames().some((n) => n.endsWith('-canonical'))).toBe(false);
    expect(() => gemmaScopeRelease('gemma-scope-2b-pt-res-canonical')).toThrow(UserError);
    expect(() => gemmaScopeRelease('gpt2-small-res-jb')).toThrow(/not a Gemma Scope release/);
    expect(gemmaScopeRelease('gemma-scope-2b-pt-res').repoId).toBe('google/gemma-scope-2b-pt-res');
  });

  it('lists the folders holding weights, locally and in a cached snapshot', async () => {
    const root = tempDir('gs-list');
    const make = (id: string, file: string | null) => {
      mkdirSync(path.join(root, id), { recursive: true });
      if (file) writeFileSync(path.join(root, id, file), '');
    };
    make('layer_3/width_16k/average_l0_20', 'params.npz');
    make('layer_3/width_16k/average_l0_100', 'params.safetensors');
    make('layer_3/width_16k/average_l0_7', null); // no weights
    make('layer_3/width_16k/canonical', 'params.npz'); // an alias, not a candidate
    make('layer_10/width_16k/average_l0_9', 'params.npz');
    expect(listGemmaScopeFolder(root).map((i) => i.id)).toEqual([
      'layer_3/width_16k/average_l0_20',
      'layer_3/width_16k/average_l0_100',
      'layer_10/width_16k/average_l0_9',
    ]);

    // The Hugging Face cache's snapshot of the repository adds the folders SAELens does not list.
    const cache = tempDir('gs-cache');
    const commit = 'a'.repeat(40);
    const repo = path.join(cache, 'models--google--gemma-scope-2b-pt-res');
    mkdirSync(path.join(repo, 'refs'), { recursive: true });
    writeFileSync(path.join(repo, 'refs', 'main'), commit);
    const extra = path.join(repo, 'snapshots', commit, 'layer_12', 'width_16k', 'average_l0_999');
    mkdirSync(extra, { recursive: true });
    writeFileSync(path.join(extra, 'params.npz'), '');
    const found = await releaseCandidates(gemmaScopeRelease('gemma-scope-2b-pt-res'), {
      HF_HUB_CACHE: cache,
    });
    const layer12 = selectIds(found.ids, [12], ['16k']).map((i) => i.averageL0);
    expect(layer12).toEqual([22, 41, 82, 176, 445, 999]);
    expect([...found.cached]).toEqual(['layer_12/width_16k/average_l0_999']);
    expect(found.snapshotDir).toBe(path.join(repo, 'snapshots', commit));
  });
});

describe('the canonical rule: L0 closest to a target on the Pareto frontier', () => {
  it("reproduces every SAELens gemma-scope-*-canonical choice from the folders' average L0 (target 100)", async () => {
    let compared = 0;
    const ties: string[] = [];
    for (const name of gemmaScopeReleaseNames()) {
      const expected = saelensCanonical(name);
      if (expected.size === 0) continue;
      const { ids } = await releaseCandidates(gemmaScopeRelease(name), { HF_HUB_CACHE: tempDir('gs-empty') });
      // Without measurements only the release's numbers count: no frontier.
      const choices = chooseNearestL0ByGroup(
        ids.map((i) => cand(i.id, { group: gemmaScopeGroup(i), releaseL0: i.averageL0, l0: i.averageL0 })),
        { targetL0: 100, frontier: 'none', l0Source: 'release' },
      );
      for (const c of choices) {
        const want = expected.get(c.group);
        if (want === undefined) continue;
        compared++;
        if (c.chosen === want) continue;
        // The folder names are rounded L0s: two of SAELens's choices sit at the same distance from 100 as
        // another folder, and were broken one way once and the other way once (by the unrounded L0s).
        const l0 = (id: string | null) => parseGemmaScopeId(id ?? '')!.averageL0;
        expect(Math.abs(l0(c.chosen) - 100), `${name} ${c.group}: ${c.chosen} vs ${want}`).toBe(
          Math.abs(l0(want) - 100),
        );
        ties.push(`${name} ${c.group}`);
      }
    }
    // 58 + 52 + 52 (2b res/mlp/att) + 90 + 84 + 84 (9b) + 3 (27b) + 6 (9b-it): every listed canonical SAE.
    expect(compared).toBe(429);
    // Ours goes to the higher L0 on a tie, as SAELens's layer_27 16k choice (136 over 64) did.
    expect(ties).toEqual(['gemma-scope-9b-pt-att layer_23/width_131k']);
  });

  it('never picks an SAE another one beats on both L0 and delta loss', () => {
    const group = [
      cand('a', { l0: 20, releaseL0: 20, deltaLoss: 0.5, fvu: 0.4 }),
      cand('b', { l0: 60, releaseL0: 60, deltaLoss: 0.2, fvu: 0.3 }),
      // Closest to 100, but b has the same L0 and a lower delta loss.
      cand('c', { l0: 60, releaseL0: 95, deltaLoss: 0.9, fvu: 0.1 }),
      cand('d', { l0: 200, releaseL0: 200, deltaLoss: 0.1, fvu: 0.05 }),
    ];
    const byLoss = chooseNearestL0(group, { targetL0: 100, frontier: 'delta_loss', l0Source: 'auto' });
    expect(byLoss.frontier).toEqual(['a', 'b', 'd']);
    expect(byLoss.l0Used).toBe('release');
    expect(byLoss.chosen).toBe('b'); // |60 - 100| < |200 - 100|
    // On FVU c is not dominated (lowest FVU at its L0), so it wins by its release L0 of 95.
    const byFvu = chooseNearestL0(group, { targetL0: 100, frontier: 'fvu', l0Source: 'auto' });
    expect(byFvu.frontier).toEqual(['a', 'c', 'd']);
    expect(byFvu.chosen).toBe('c');
    // Measured L0: c's is 60, tying nothing; target 150 picks d (|200-150| = 50 < |60-150| = 90).
    expect(chooseNearestL0(group, { targetL0: 150, frontier: 'fvu', l0Source: 'measured' }).chosen).toBe('d');
    expect(chooseNearestL0(group, { targetL0: 100, frontier: 'none', l0Source: 'release' }).chosen).toBe('c');
  });

  it('auto falls back to measured L0 when a frontier SAE has no release L0; ties go to the higher L0', () => {
    const group = [
      cand('x', { l0: 64, releaseL0: null, deltaLoss: 0.3 }),
      cand('y', { l0: 136, releaseL0: 90, deltaLoss: 0.1 }),
    ];
    const auto = chooseNearestL0(group, { targetL0: 100, frontier: 'delta_loss', l0Source: 'auto' });
    expect(auto.l0Used).toBe('measured');
    expect(auto.chosen).toBe('y'); // |64 - 100| = |136 - 100|: the higher L0
    const release = chooseNearestL0(group, { targetL0: 100, frontier: 'delta_loss', l0Source: 'release' });
    expect(release.l0Used).toBe('release');
    expect(release.chosen).toBe('y'); // x has no release L0
    // No SAE with the numbers: no choice.
    expect(
      chooseNearestL0([cand('z', { l0: 5 })], { targetL0: 100, frontier: 'delta_loss', l0Source: 'auto' })
        .chosen,
    ).toBeNull();
    expect(nearestL0Rule({ targetL0: 100, frontier: 'delta_loss', l0Source: 'auto' })).toMatch(
      /target_l0 = 100/,
    );
  });
});
