import { describe, expect, it } from 'vitest';
import { chooseCanonical, paretoFrontier, summarizeSweep } from '../src/eval/index.js';
import type { SweepPoint } from '../src/eval/index.js';

const p = (
  name: string,
  group: string,
  l0: number | null,
  ce: number | null,
  ev: number | null = null,
): SweepPoint => ({
  name,
  group,
  l0,
  ce_loss_score: ce,
  explained_variance: ev,
});

// Layer 0: C is dominated by B (more L0, less CE score); B and E are identical, so neither dominates the
// other; F has no CE score. Layer 1: G and H trade off.
const points: SweepPoint[] = [
  p('A', '0', 10, 0.8, 0.6),
  p('B', '0', 20, 0.9, 0.7),
  p('C', '0', 30, 0.85, 0.9),
  p('D', '0', 40, 0.95, 0.8),
  p('E', '0', 20, 0.9, 0.65),
  p('F', '0', 5, null, 0.1),
  p('G', '1', 5, 0.5, 0.5),
  p('H', '1', 50, 0.7, 0.4),
];
const layer0 = points.filter((q) => q.group === '0');

describe('paretoFrontier', () => {
  it('keeps exactly the non-dominated points, sorted by L0', () => {
    const names = (xs: SweepPoint[]) => xs.map((q) => q.name);
    expect(
      names(
        paretoFrontier(
          layer0,
          (q) => q.l0,
          (q) => q.ce_loss_score,
        ),
      ),
    ).toEqual(['A', 'B', 'E', 'D']);
    // Against explained variance C is the best above 20 and D is dominated by it; F (L0 5) now counts.
    expect(
      names(
        paretoFrontier(
          layer0,
          (q) => q.l0,
          (q) => q.explained_variance,
        ),
      ),
    ).toEqual(['F', 'A', 'B', 'C']);
    expect(
      paretoFrontier(
        [],
        (q: SweepPoint) => q.l0,
        (q) => q.l0,
      ),
    ).toEqual([]);
  });
});

describe('canonical SAE per layer', () => {
  it('lowest L0 on the frontier at or above the CE-score floor', () => {
    expect(chooseCanonical(layer0, { ceScoreFloor: 0.88 })?.name).toBe('B');
    expect(chooseCanonical(layer0, { ceScoreFloor: 0.8 })?.name).toBe('A');
    expect(chooseCanonical(layer0, { ceScoreFloor: 0.95 })?.name).toBe('D');
  });

  it('no SAE reaches the floor: the highest CE score', () => {
    expect(chooseCanonical(layer0, { ceScoreFloor: 0.99 })?.name).toBe('D');
  });

  it('closest to target_l0 among frontier SAEs (a dominated SAE is never chosen)', () => {
    // C (L0 30) is as close to 25 as B but dominated.
    expect(chooseCanonical(layer0, { ceScoreFloor: 0.99, targetL0: 25 })?.name).toBe('B');
    expect(chooseCanonical(layer0, { ceScoreFloor: 0, targetL0: 33 })?.name).toBe('D');
    expect(chooseCanonical(layer0, { ceScoreFloor: 0, targetL0: 0 })?.name).toBe('A');
  });

  it('no SAE with both numbers: none', () => {
    expect(
      chooseCanonical([p('X', '0', null, 0.9), p('Y', '0', 3, null)], { ceScoreFloor: 0 }),
    ).toBeUndefined();
  });

  it('summarizeSweep: frontiers and canonical SAEs per layer, with the rule in words', () => {
    const s = summarizeSweep(points, { ceScoreFloor: 0.88 });
    expect(s.ce).toEqual(['A', 'B', 'E', 'D', 'G', 'H']);
    expect(s.explained_variance).toEqual(['F', 'A', 'B', 'C', 'G']);
    expect(s.canonical).toEqual({ '0': 'B', '1': 'H' });
    expect(s.rule).toContain('ce_score_floor = 0.88');
    expect(summarizeSweep(points, { ceScoreFloor: 0.88, targetL0: 4 }).canonical).toEqual({
      '0': 'A',
      '1': 'G',
    });
    expect(summarizeSweep(points, { ceScoreFloor: 0.88, targetL0: 4 }).rule).toContain('target_l0 = 4');
  });
});
