/**
 * What the Gemma Scope pipeline reports beside the usual evaluation report: per layer and width, the
 * canonical SAE chosen by the nearest-L0 rule (src/eval/nearest-l0.ts) with its metrics, decoder norms and
 * SAELens's own canonical choice; the per-layer L0 series; every candidate's numbers; and the SAEs whose
 * decoder rows are not unit norm (Gemma Scope's decoders are). Written as `gemma-scope.json` and
 * `gemma-scope.md`, each atomically.
 */
import path from 'node:path';
import { escapeMarkdownCell } from '../report/escape.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic-write.js';
import type { SaeEvalResult } from './evaluator.js';
import type { GroupChoice, NearestL0Options } from './nearest-l0.js';

export const SCOPE_JSON = 'gemma-scope.json';
export const SCOPE_MD = 'gemma-scope.md';

export interface DecoderNormSummary {
  min: number;
  mean: number;
  max: number;
  /** max over rows of |‖W_dec[f]‖ - 1|. */
  max_deviation_from_1: number;
}

export interface ScopeSaeRecord {
  /** The folder id in the release (`layer_12/width_16k/average_l0_82`). */
  name: string;
  group: string;
  layer: number;
  width: string;
  /** The folder's `average_l0_K`. */
  release_l0: number | null;
  hook_name: string;
  hook_name_out?: string;
  d_in: number;
  d_sae: number;
  /** The weights file evaluated (in the Hugging Face cache for a release's SAE). */
  source: string;
  eval_file: string;
  metrics: {
    l0: number | null;
    explained_variance: number | null;
    fvu: number | null;
    mse: number | null;
    ce_loss_score: number | null;
    ce_loss_with_sae: number | null;
    ce_loss_without_sae: number | null;
    delta_loss: number | null;
    kl_div_score: number | null;
    kl_div_with_sae: number | null;
    dead_features: number | null;
  };
  decoder_norm: DecoderNormSummary;
  /** Every decoder row within the tolerance of norm 1. */
  decoder_norm_unit: boolean;
}

const finite = (v: number | null | undefined): number | null =>
  typeof v === 'number' && Number.isFinite(v) ? v : null;

/** The record of one evaluated SAE. */
export function scopeSaeRecord(
  result: SaeEvalResult,
  id: { id: string; group: string; layer: number; width: string; releaseL0: number | null },
  evalFile: string,
  decoderNormTolerance: number,
): ScopeSaeRecord {
  const { target, metrics: m } = result;
  const ev = finite(m.explained_variance);
  const withSae = finite(m.ce_loss_with_sae);
  const clean = finite(m.ce_loss_without_sae);
  const norms = target.weightStats.decoder_norm;
  return {
    name: id.id,
    group: id.group,
    layer: id.layer,
    width: id.width,
    release_l0: id.releaseL0,
    hook_name: target.hookIn.name,
    ...(target.transcoder ? { hook_name_out: target.hookOut.name } : {}),
    d_in: target.config.d_in,
    d_sae: target.config.d_sae,
    source: target.source,
    eval_file: evalFile,
    metrics: {
      l0: finite(m.l0),
      explained_variance: ev,
      fvu: ev === null ? null : 1 - ev,
      mse: finite(m.mse),
      ce_loss_score: finite(m.ce_loss_score),
      ce_loss_with_sae: withSae,
      ce_loss_without_sae: clean,
      delta_loss: withSae === null || clean === null ? null : withSae - clean,
      kl_div_score: finite(m.kl_div_score),
      kl_div_with_sae: finite(m.kl_div_with_sae),
      dead_features: finite(m.dead_features),
    },
    decoder_norm: {
      min: norms.min,
      mean: norms.mean,
      max: norms.max,
      max_deviation_from_1: norms.max_deviation_from_1,
    },
    decoder_norm_unit: norms.max_deviation_from_1 <= decoderNormTolerance,
  };
}

export interface CanonicalRow {
  group: string;
  layer: number;
  width: string;
  /** Null when no SAE of the group had the numbers the rule needs. */
  chosen: string | null;
  l0_used: 'release' | 'measured';
  l0: number | null;
  release_l0: number | null;
  delta_loss: number | null;
  fvu: number | null;
  explained_variance: number | null;
  ce_loss_score: number | null;
  kl_div_score: number | null;
  decoder_norm: DecoderNormSummary | null;
  decoder_norm_unit: boolean | null;
  frontier: string[];
  candidates: string[];
  /** SAELens's canonical SAE of this layer and width, if its release lists one. */
  saelens_canonical: string | null;
  /** Whether the choice equals SAELens's; null when SAELens has none or it was not among the candidates. */
  agrees_with_saelens: boolean | null;
}

export interface ScopeReport {
  run: Record<string, unknown>;
  rule: string;
  target_l0: number;
  frontier_metric: NearestL0Options['frontier'];
  l0_source: NearestL0Options['l0Source'];
  decoder_norm_tolerance: number;
  canonical: CanonicalRow[];
  /** Width -> the canonical SAEs' L0 by layer. */
  l0_by_layer: Record<
    string,
    Array<{ layer: number; sae: string; l0: number | null; release_l0: number | null }>
  >;
  /** SAEs with a decoder row whose norm is off 1 by more than the tolerance. */
  non_unit_decoders: string[];
  saes: ScopeSaeRecord[];
}

export function buildScopeReport(args: {
  run: Record<string, unknown>;
  rule: string;
  options: NearestL0Options;
  decoderNormTolerance: number;
  saes: readonly ScopeSaeRecord[];
  choices: readonly GroupChoice[];
  /** Group -> SAELens's canonical folder id. */
  saelens: ReadonlyMap<string, string>;
}): ScopeReport {
  const byName = new Map(args.saes.map((s) => [s.name, s]));
  const canonical = args.choices.map((c): CanonicalRow => {
    const first = byName.get(c.candidates[0]!)!;
    const s = c.chosen === null ? undefined : byName.get(c.chosen);
    const theirs = args.saelens.get(c.group) ?? null;
    return {
      group: c.group,
      layer: first.layer,
      width: first.width,
      chosen: c.chosen,
      l0_used: c.l0Used,
      l0: s?.metrics.l0 ?? null,
      release_l0: s?.release_l0 ?? null,
      delta_loss: s?.metrics.delta_loss ?? null,
      fvu: s?.metrics.fvu ?? null,
      explained_variance: s?.metrics.explained_variance ?? null,
      ce_loss_score: s?.metrics.ce_loss_score ?? null,
      kl_div_score: s?.metrics.kl_div_score ?? null,
      decoder_norm: s?.decoder_norm ?? null,
      decoder_norm_unit: s?.decoder_norm_unit ?? null,
      frontier: c.frontier,
      candidates: c.candidates,
      saelens_canonical: theirs,
      agrees_with_saelens:
        theirs !== null && c.chosen !== null && c.candidates.includes(theirs) ? theirs === c.chosen : null,
    };
  });
  canonical.sort((a, b) => a.layer - b.layer || (a.width < b.width ? -1 : a.width > b.width ? 1 : 0));
  const l0ByLayer: ScopeReport['l0_by_layer'] = {};
  for (const row of canonical) {
    if (row.chosen === null) continue;
    (l0ByLayer[row.width] ??= []).push({
      layer: row.layer,
      sae: row.chosen,
      l0: row.l0,
      release_l0: row.release_l0,
    });
  }
  return {
    run: args.run,
    rule: args.rule,
    target_l0: args.options.targetL0,
    frontier_metric: args.options.frontier,
    l0_source: args.options.l0Source,
    decoder_norm_tolerance: args.decoderNormTolerance,
    canonical,
    l0_by_layer: l0ByLayer,
    non_unit_decoders: args.saes.filter((s) => !s.decoder_norm_unit).map((s) => s.name),
    saes: [...args.saes],
  };
}

const num = (v: number | null | undefined, digits = 4): string =>
  v === null || v === undefined ? '–' : Number.isInteger(v) ? String(v) : v.toPrecision(digits);
const cell = (s: string) => escapeMarkdownCell(s);

function table(header: string[], rows: string[][]): string[] {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ];
}

/** The report in Markdown: canonical table, L0 per layer, every SAE, decoder-norm flags. */
export function renderScopeMarkdown(report: ScopeReport): string {
  const out: string[] = ['# Gemma Scope: canonical SAE per layer', ''];
  for (const [k, v] of Object.entries(report.run)) out.push(`- **${cell(k)}:** ${cell(String(v))}`);
  out.push('', `Rule: ${cell(report.rule)}.`, '');
  out.push(
    ...table(
      [
        'layer',
        'width',
        'canonical SAE',
        'L0',
        'release L0',
        'delta loss',
        'FVU',
        'CE loss score',
        'KL score',
        'decoder norm min / mean / max',
        'SAELens canonical',
      ],
      report.canonical.map((r) => [
        String(r.layer),
        cell(r.width),
        r.chosen === null ? '–' : cell(r.chosen),
        num(r.l0),
        num(r.release_l0),
        num(r.delta_loss),
        num(r.fvu),
        num(r.ce_loss_score),
        num(r.kl_div_score),
        r.decoder_norm === null
          ? '–'
          : `${num(r.decoder_norm.min, 6)} / ${num(r.decoder_norm.mean, 6)} / ${num(r.decoder_norm.max, 6)}${r.decoder_norm_unit ? '' : ' ⚠'}`,
        r.saelens_canonical === null
          ? '–'
          : `${cell(r.saelens_canonical)}${r.agrees_with_saelens === null ? '' : r.agrees_with_saelens ? ' (same)' : ' (differs)'}`,
      ]),
    ),
    '',
  );
  out.push('## L0 per layer (canonical SAEs)', '');
  for (const [width, series] of Object.entries(report.l0_by_layer)) {
    out.push(`- width ${cell(width)}: ${series.map((p) => `${p.layer}: ${num(p.l0)}`).join(', ')}`);
  }
  out.push('', '## Every SAE', '');
  out.push(
    ...table(
      [
        'SAE',
        'L0',
        'release L0',
        'delta loss',
        'FVU',
        'CE loss score',
        'decoder norm min / mean / max',
        'frontier',
      ],
      report.saes.map((s) => {
        const row = report.canonical.find((r) => r.group === s.group);
        const mark = row?.chosen === s.name ? '★ ' : '';
        return [
          `${mark}${cell(s.name)}`,
          num(s.metrics.l0),
          num(s.release_l0),
          num(s.metrics.delta_loss),
          num(s.metrics.fvu),
          num(s.metrics.ce_loss_score),
          `${num(s.decoder_norm.min, 6)} / ${num(s.decoder_norm.mean, 6)} / ${num(s.decoder_norm.max, 6)}${s.decoder_norm_unit ? '' : ' ⚠'}`,
          row?.frontier.includes(s.name) ? 'yes' : 'no',
        ];
      }),
    ),
    '',
  );
  if (report.non_unit_decoders.length > 0) {
    out.push(
      `⚠ Decoder rows not of unit norm (|norm - 1| > ${report.decoder_norm_tolerance}): ${report.non_unit_decoders.map(cell).join(', ')}`,
      '',
    );
  } else {
    out.push(`Every decoder row has unit norm (within ${report.decoder_norm_tolerance}).`, '');
  }
  return out.join('\n');
}

/** Writes gemma-scope.json and gemma-scope.md into runDir, each to a temporary name then renamed. */
export async function writeScopeReport(
  runDir: string,
  report: ScopeReport,
): Promise<{ json: string; markdown: string }> {
  const json = path.join(runDir, SCOPE_JSON);
  const markdown = path.join(runDir, SCOPE_MD);
  await writeJsonAtomic(json, report);
  await writeFileAtomic(markdown, renderScopeMarkdown(report));
  return { json, markdown };
}
