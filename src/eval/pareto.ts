/**
 * Sweeps: Pareto frontiers of sparsity (L0, lower is better) against a quality score (CE loss score or
 * explained variance, higher is better), and the choice of one canonical SAE per layer. Pure functions on
 * plain numbers.
 */

export interface SweepPoint {
  name: string;
  /** SAEs are compared within a group: the layer (`"8"`), or the hook name for hooks outside the blocks. */
  group: string;
  l0: number | null;
  ce_loss_score: number | null;
  explained_variance: number | null;
}

export interface CanonicalOptions {
  /** Lowest CE loss score a canonical SAE should reach. */
  ceScoreFloor: number;
  /** When given, prefer the frontier SAE whose L0 is closest to this. */
  targetL0?: number | null;
}

export interface SweepSummary {
  /** Names on the L0 vs CE-loss-score frontier of their group, by group then L0. */
  ce: string[];
  /** Names on the L0 vs explained-variance frontier of their group. */
  explained_variance: string[];
  /** Group -> the canonical SAE's name. */
  canonical: Record<string, string>;
  rule: string;
}

const usable = (v: number | null | undefined): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * The points not dominated by another: q dominates p when q.x <= p.x and q.y >= p.y with one of them strict.
 * Points without both numbers are left out. Identical points are all kept. Sorted by x, then y descending.
 */
export function paretoFrontier<T>(
  points: readonly T[],
  x: (p: T) => number | null | undefined,
  y: (p: T) => number | null | undefined,
): T[] {
  const valid = points.filter((p) => usable(x(p)) && usable(y(p)));
  const frontier = valid.filter((p) => {
    const px = x(p) as number;
    const py = y(p) as number;
    return !valid.some((q) => {
      const qx = x(q) as number;
      const qy = y(q) as number;
      return qx <= px && qy >= py && (qx < px || qy > py);
    });
  });
  return frontier.sort((a, b) => (x(a) as number) - (x(b) as number) || (y(b) as number) - (y(a) as number));
}

function groupsOf(points: readonly SweepPoint[]): Map<string, SweepPoint[]> {
  const groups = new Map<string, SweepPoint[]>();
  for (const p of points) {
    const list = groups.get(p.group) ?? [];
    list.push(p);
    groups.set(p.group, list);
  }
  return groups;
}

/** Frontier members of each group, concatenated (groups in first-seen order). */
export function frontierByGroup(
  points: readonly SweepPoint[],
  metric: 'ce_loss_score' | 'explained_variance',
): SweepPoint[] {
  return [...groupsOf(points).values()].flatMap((g) =>
    paretoFrontier(
      g,
      (p) => p.l0,
      (p) => p[metric],
    ),
  );
}

export function canonicalRule(options: CanonicalOptions): string {
  const frontier =
    'among the SAEs of each layer on that layer’s Pareto frontier of L0 (lower is better) against CE loss score (higher is better)';
  if (usable(options.targetL0)) {
    return `${frontier}, the one whose L0 is closest to target_l0 = ${options.targetL0} (ties: the higher CE loss score)`;
  }
  return (
    `${frontier}, the one with the lowest L0 whose CE loss score is at least ce_score_floor = ${options.ceScoreFloor}; ` +
    'if none reaches the floor, the one with the highest CE loss score'
  );
}

/** The canonical SAE of one group by the rule `canonicalRule` describes; undefined when no SAE has both numbers. */
export function chooseCanonical(
  points: readonly SweepPoint[],
  options: CanonicalOptions,
): SweepPoint | undefined {
  const frontier = paretoFrontier(
    points,
    (p) => p.l0,
    (p) => p.ce_loss_score,
  );
  if (frontier.length === 0) return undefined;
  const target = options.targetL0;
  if (usable(target)) {
    return frontier.reduce((best, p) => {
      const d = Math.abs((p.l0 as number) - target);
      const bestD = Math.abs((best.l0 as number) - target);
      if (d < bestD) return p;
      if (d === bestD && (p.ce_loss_score as number) > (best.ce_loss_score as number)) return p;
      return best;
    });
  }
  // The frontier is sorted by L0, so the first member above the floor has the lowest L0.
  const aboveFloor = frontier.find((p) => (p.ce_loss_score as number) >= options.ceScoreFloor);
  if (aboveFloor) return aboveFloor;
  return frontier.reduce((best, p) =>
    (p.ce_loss_score as number) > (best.ce_loss_score as number) ? p : best,
  );
}

export function summarizeSweep(points: readonly SweepPoint[], options: CanonicalOptions): SweepSummary {
  const canonical: Record<string, string> = {};
  for (const [group, members] of groupsOf(points)) {
    const chosen = chooseCanonical(members, options);
    if (chosen) canonical[group] = chosen.name;
  }
  return {
    ce: frontierByGroup(points, 'ce_loss_score').map((p) => p.name),
    explained_variance: frontierByGroup(points, 'explained_variance').map((p) => p.name),
    canonical,
    rule: `${canonicalRule(options)}. Frontiers are computed within each layer.`,
  };
}
