/**
 * Gemma Scope's canonical choice: per layer and width, the SAE whose average L0 is closest to a target
 * (100 in Gemma Scope's model cards: "canonical SAEs, those with average L0 closest to 100"; SAELens's
 * `gemma-scope-*-canonical` releases list those folders: all 429 follow from the folder names' rounded L0s,
 * two of them at a tie that they break once each way), here taken among the SAEs on the group's
 * Pareto frontier of L0 against delta loss (or FVU), so that an SAE another one beats on both counts is never
 * chosen. Pure functions on plain numbers.
 */
import { paretoFrontier } from './pareto.js';

/** What the frontier weighs L0 against (lower is better): CE loss added by the splice, 1 - EV, or nothing. */
export const FRONTIER_METRICS = ['delta_loss', 'fvu', 'none'] as const;
export type FrontierMetric = (typeof FRONTIER_METRICS)[number];

/**
 * Which L0 the distance to the target is measured on: `release` is the folder's `average_l0_K` (what Google
 * measured on its data, and what SAELens's canonical list went by), `measured` is this evaluation's L0, `auto`
 * the release's where every frontier SAE of the group has one, else the measured one.
 */
export const L0_SOURCES = ['auto', 'release', 'measured'] as const;
export type L0Source = (typeof L0_SOURCES)[number];

export interface L0Candidate {
  name: string;
  /** SAEs compete within a group (`layer_12/width_16k`). */
  group: string;
  /** L0 measured in this evaluation. */
  l0: number | null;
  /** L0 the release states (Gemma Scope's `average_l0_K`), if any. */
  releaseL0: number | null;
  /** CE loss with the SAE spliced in minus the clean CE loss. */
  deltaLoss: number | null;
  /** Fraction of variance unexplained, 1 - explained variance. */
  fvu: number | null;
}

export interface NearestL0Options {
  targetL0: number;
  frontier: FrontierMetric;
  l0Source: L0Source;
}

export interface GroupChoice {
  group: string;
  /** The chosen SAE, or null when no SAE of the group has the numbers the rule needs. */
  chosen: string | null;
  /** Which L0 the choice measured the distance on. */
  l0Used: 'release' | 'measured';
  /** Frontier members, by measured L0 (every SAE with the numbers when the frontier is `none`). */
  frontier: string[];
  /** Every SAE of the group, in input order. */
  candidates: string[];
}

const usable = (v: number | null | undefined): v is number => typeof v === 'number' && Number.isFinite(v);

export function frontierValue(c: L0Candidate, metric: FrontierMetric): number | null {
  if (metric === 'delta_loss') return c.deltaLoss;
  if (metric === 'fvu') return c.fvu;
  return 0;
}

const FRONTIER_WORDS: Record<FrontierMetric, string> = {
  delta_loss: 'delta loss (CE loss with the SAE spliced in minus the clean CE loss)',
  fvu: 'FVU (1 - explained variance)',
  none: '',
};

/** The rule in words, for reports. */
export function nearestL0Rule(options: NearestL0Options): string {
  const among =
    options.frontier === 'none'
      ? 'among all SAEs of each layer and width'
      : `among the SAEs on each layer and width's Pareto frontier of measured L0 against ${FRONTIER_WORDS[options.frontier]}, both lower is better`;
  const l0 =
    options.l0Source === 'release'
      ? "the release's average L0 (the folder's average_l0_K)"
      : options.l0Source === 'measured'
        ? 'the L0 measured here'
        : "the release's average L0 (the folder's average_l0_K) where every such SAE has one, else the L0 measured here";
  return (
    `${among}, the one whose L0 is closest to target_l0 = ${options.targetL0}, by ${l0}; ties go to the higher L0 ` +
    '(Gemma Scope\'s canonical SAEs are "those with average L0 closest to 100", as SAELens\'s gemma-scope-*-canonical releases list them)'
  );
}

/** The choice in one group (all candidates must share it). */
export function chooseNearestL0(candidates: readonly L0Candidate[], options: NearestL0Options): GroupChoice {
  const group = candidates[0]?.group ?? '';
  const metric = options.frontier;
  const withNumbers = candidates.filter((c) => usable(c.l0) && usable(frontierValue(c, metric)));
  const frontier =
    metric === 'none'
      ? [...withNumbers].sort((a, b) => (a.l0 as number) - (b.l0 as number))
      : paretoFrontier(
          withNumbers,
          (c) => c.l0,
          // paretoFrontier keeps the highest y: negate the lower-is-better metric.
          (c) => -(frontierValue(c, metric) as number),
        );
  const releaseEverywhere = frontier.length > 0 && frontier.every((c) => usable(c.releaseL0));
  const l0Used: 'release' | 'measured' =
    options.l0Source === 'release' || (options.l0Source === 'auto' && releaseEverywhere)
      ? 'release'
      : 'measured';
  const l0Of = (c: L0Candidate) => (l0Used === 'release' ? c.releaseL0 : c.l0);
  const eligible = frontier.filter((c) => usable(l0Of(c)));
  let chosen: L0Candidate | null = null;
  for (const c of eligible) {
    if (chosen === null) {
      chosen = c;
      continue;
    }
    const d = Math.abs((l0Of(c) as number) - options.targetL0);
    const best = Math.abs((l0Of(chosen) as number) - options.targetL0);
    if (d < best || (d === best && (l0Of(c) as number) > (l0Of(chosen) as number))) chosen = c;
  }
  return {
    group,
    chosen: chosen?.name ?? null,
    l0Used,
    frontier: frontier.map((c) => c.name),
    candidates: candidates.map((c) => c.name),
  };
}

/** The choice in every group, groups in first-seen order. */
export function chooseNearestL0ByGroup(
  candidates: readonly L0Candidate[],
  options: NearestL0Options,
): GroupChoice[] {
  const groups = new Map<string, L0Candidate[]>();
  for (const c of candidates) {
    const list = groups.get(c.group) ?? [];
    list.push(c);
    groups.set(c.group, list);
  }
  return [...groups.values()].map((g) => chooseNearestL0(g, options));
}
