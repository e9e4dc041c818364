/**
 * A realistic, deterministic ReportData for the report tests: a small sweep over two GPT-2 layers (TopK,
 * JumpReLU, standard SAEs and a transcoder without CE metrics), training curves for the SAEs trained in the
 * run, and feature dashboards whose tokens include markup, quotes, control and bidi characters.
 */
import type {
  FeatureDashboard,
  Histogram,
  ReportData,
  SaeReport,
  TrainingCurvePoint,
} from '../src/report/index.js';
import { Mulberry32 } from '../src/util/random.js';

/** Tokens that must show as text and never act as markup or script. */
export const HOSTILE_TOKENS = [
  '</script><img src=x onerror=alert(1)>',
  '<script>window.__pwned=1</script>',
  '"><svg onload=window.__pwned=2>',
  '&amp; \'quoted\' "double"',
  '<!--',
  ' | pipe | ',
  '\n\n',
  '\t',
  '\u202eevil',
  '',
] as const;

const PROSE =
  ' Call me Ishmael . Some years ago , never mind how long precisely , having little or no money in my purse , and nothing particular to interest me on shore , I thought I would sail about a little and see the watery part of the world .'.split(
    /(?= )/,
  );

function gaussian(rng: Mulberry32): number {
  const u = Math.max(rng.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

function histogram(
  rng: Mulberry32,
  lo: number,
  hi: number,
  bins: number,
  centre: number,
  spread: number,
  n: number,
): Histogram {
  const edges = Array.from({ length: bins + 1 }, (_, i) => lo + ((hi - lo) * i) / bins);
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < n; i++) {
    const v = centre + spread * gaussian(rng);
    const b = Math.min(bins - 1, Math.max(0, Math.floor(((v - lo) / (hi - lo)) * bins)));
    counts[b]! += 1;
  }
  return { edges, counts };
}

const windowDead = (step: number, dead: number) => (step <= 1000 ? 0 : dead);

function curve(rng: Mulberry32, steps: number, finalL0: number, finalEv: number): TrainingCurvePoint[] {
  return Array.from({ length: steps }, (_, i) => {
    const t = (i + 1) / steps;
    return {
      step: (i + 1) * 100,
      tokens: (i + 1) * 100 * 4096,
      loss: 0.05 + 2 * Math.exp(-6 * t) + 0.01 * rng.next(),
      l0: finalL0 + 300 * Math.exp(-8 * t),
      explained_variance: finalEv * (1 - Math.exp(-5 * t)),
      // SAELens's count waits for the window (here 1000 steps); features that never fired show from the start.
      dead_features: windowDead((i + 1) * 100, Math.round(2000 * Math.exp(-4 * t) + 5 * rng.next())),
      never_fired_features: Math.round(3000 * Math.exp(-6 * t)),
    };
  });
}

interface SaeSpec {
  name: string;
  layer: number | null;
  architecture: string;
  d_sae: number;
  l0: number;
  ev: number;
  ce: number | null;
  dead: number;
  trained: boolean;
  hook?: string;
}

const SPECS: SaeSpec[] = [
  {
    name: 'L6-topk-k32-16k',
    layer: 6,
    architecture: 'topk',
    d_sae: 16384,
    l0: 32,
    ev: 0.781,
    ce: 0.9312,
    dead: 12,
    trained: true,
  },
  {
    name: 'L6-topk-k64-16k',
    layer: 6,
    architecture: 'topk',
    d_sae: 16384,
    l0: 64,
    ev: 0.842,
    ce: 0.9587,
    dead: 40,
    trained: true,
  },
  {
    name: 'L6-standard-8k',
    layer: 6,
    architecture: 'standard',
    d_sae: 8192,
    l0: 118.4,
    ev: 0.835,
    ce: 0.9401,
    dead: 733,
    trained: false,
  },
  {
    name: 'L8-jumprelu-24k',
    layer: 8,
    architecture: 'jumprelu',
    d_sae: 24576,
    l0: 45.2,
    ev: 0.803,
    ce: 0.9455,
    dead: 3,
    trained: true,
  },
  {
    name: 'L8-topk-k128-24k',
    layer: 8,
    architecture: 'topk',
    d_sae: 24576,
    l0: 128,
    ev: 0.871,
    ce: 0.9702,
    dead: 0,
    trained: false,
  },
  {
    name: 'L8-transcoder-mlp',
    layer: 8,
    architecture: 'standard (transcoder)',
    d_sae: 12288,
    l0: 58.7,
    ev: 0.712,
    ce: null,
    dead: 150,
    trained: false,
    hook: 'blocks.8.ln2.hook_normalized',
  },
];

function sae(spec: SaeSpec, rng: Mulberry32): SaeReport {
  const ceClean = 3.312;
  const ceAbl = 10.42;
  const ce = spec.ce;
  return {
    name: spec.name,
    path: `runs/sweep-2026-11-23/checkpoints/${spec.name}`,
    hook_name: spec.hook ?? `blocks.${spec.layer}.hook_resid_pre`,
    layer: spec.layer,
    architecture: spec.architecture,
    d_in: 768,
    d_sae: spec.d_sae,
    metrics: {
      mse: 2.1 * (1 - spec.ev) * 100,
      explained_variance: spec.ev,
      cossim: 0.9 + spec.ev / 20,
      l2_ratio: 0.93 + spec.ev / 30,
      relative_reconstruction_bias: 0.98 + rng.next() / 50,
      l0: spec.l0,
      l1: spec.l0 * 1.7,
      ce_loss_score: ce,
      ce_loss_with_sae: ce === null ? null : ceAbl - ce * (ceAbl - ceClean),
      ce_loss_without_sae: ce === null ? null : ceClean,
      ce_loss_with_ablation: ce === null ? null : ceAbl,
      kl_div_score: ce === null ? null : ce - 0.01,
      kl_div_with_sae: ce === null ? null : (1 - ce) * 6,
      kl_div_with_ablation: ce === null ? null : 6.02,
      dead_features: spec.dead,
      alive_features: spec.d_sae - spec.dead,
      mean_log10_feature_density: -3.4 + spec.l0 / 200,
    },
    density_histogram: histogram(rng, -10, 0, 50, -3.2 + spec.l0 / 150, 0.8, 2000),
    l0_histogram: histogram(rng, 0, 256, 32, spec.l0, spec.l0 / 4, 3000),
    weight_stats: {
      W_dec_norm_mean: 1,
      W_dec_norm_std: 1e-7,
      W_enc_norm_mean: 0.41 + rng.next() / 10,
      b_enc_mean: -0.02 - rng.next() / 50,
      b_dec_norm: 2.7 + rng.next(),
    },
    training_curve: spec.trained ? curve(rng, 60, spec.l0, spec.ev) : [],
  };
}

function dashboard(rng: Mulberry32, saeName: string, feature: number, hostile: boolean): FeatureDashboard {
  const maxAct = 4 + 10 * rng.next();
  const contexts = Array.from({ length: 6 }, (_, c) => {
    const start = Math.floor(rng.next() * (PROSE.length - 24));
    const tokens = PROSE.slice(start, start + 24);
    if (hostile) tokens.splice(3 + (c % 4), 0, HOSTILE_TOKENS[c % HOSTILE_TOKENS.length]!);
    const peak = 6 + Math.floor(rng.next() * 10);
    const scale = maxAct * (1 - c * 0.08);
    const activations = tokens.map((_, i) => {
      const d = Math.abs(i - peak);
      return d === 0 ? scale : d < 4 && rng.next() < 0.6 ? scale * rng.next() * 0.6 : 0;
    });
    return { tokens, activations, max_index: peak };
  });
  if (hostile) {
    // One context made only of the remaining hostile tokens, the first one as the peak.
    const tokens = [...HOSTILE_TOKENS];
    contexts.push({
      tokens,
      activations: tokens.map((_, i) => (i === 0 ? maxAct * 0.5 : 0.1 * i)),
      max_index: 0,
    });
  }
  const h = histogram(rng, 0, maxAct, 30, maxAct / 4, maxAct / 6, 5000);
  return {
    sae: saeName,
    feature,
    density: 10 ** (-4 + 2 * rng.next()),
    max_activation: maxAct,
    top_contexts: contexts,
    histogram: h,
    promoted: [' whale', ' ship', hostile ? HOSTILE_TOKENS[0] : ' sea', ' harpoon', '\n'].map((token, i) => ({
      token,
      value: 1.2 - i * 0.15,
    })),
    suppressed: [' the', hostile ? '|' : ' a', ' dog', "'s", ' <'].map((token, i) => ({
      token,
      value: -0.9 + i * 0.1,
    })),
  };
}

export function syntheticReportData(seed = 7): ReportData {
  const rng = new Mulberry32(seed);
  const saes = SPECS.map((s) => sae(s, rng));
  return {
    run: {
      name: 'gpt2-sweep <L6 & L8>',
      created: '2026-11-23T12:00:00Z',
      model: 'gpt2',
      dataset: 'moby-dick',
      n_eval_tokens: 409_600,
    },
    saes,
    pareto: {
      ce: ['L6-topk-k32-16k', 'L8-jumprelu-24k', 'L6-topk-k64-16k', 'L8-topk-k128-24k'],
      explained_variance: ['L6-topk-k32-16k', 'L8-jumprelu-24k', 'L6-topk-k64-16k', 'L8-topk-k128-24k'],
      canonical: { '6': 'L6-topk-k64-16k', '8': 'L8-jumprelu-24k' },
      rule: 'per layer, the highest CE loss score with L0 at most 100',
    },
    dashboards: [
      dashboard(rng, 'L6-topk-k64-16k', 1207, true),
      dashboard(rng, 'L6-topk-k64-16k', 88, false),
      dashboard(rng, 'L8-jumprelu-24k', 20511, false),
    ],
  };
}

/** The smallest report: one SAE without a layer, no CE metrics, no histograms, no curves, no dashboards. */
export function minimalReportData(): ReportData {
  return {
    run: { name: 'one', created: '2026-11-23', model: 'gpt2', dataset: 'x.txt', n_eval_tokens: 1000 },
    saes: [
      {
        name: 'only',
        path: '/tmp/only',
        hook_name: 'blocks.0.hook_mlp_out',
        layer: null,
        architecture: 'standard',
        d_in: 768,
        d_sae: 3072,
        metrics: { l0: 20.5, explained_variance: 0.5, ce_loss_score: null, kl_div_score: null },
        density_histogram: { edges: [], counts: [] },
        l0_histogram: { edges: [], counts: [] },
        weight_stats: {},
        training_curve: [],
      },
    ],
    pareto: { ce: [], explained_variance: [], canonical: {}, rule: '' },
    dashboards: [],
  };
}
