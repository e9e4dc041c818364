import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/pipeline/errors.js';
import { layerChart, paretoChart, trainingChart, wantsLog } from '../src/report/charts.js';
import type { ChartSpec } from '../src/report/charts.js';
import { highlightScale, tokenIntensity } from '../src/report/dashboards-html.js';
import { contextExcerpt } from '../src/report/markdown.js';
import {
  escapeHtml,
  escapeMarkdownCell,
  jsonForScript,
  loadReportData,
  renderReport,
  renderReportFromFile,
  validateReportData,
  visibleWhitespace,
} from '../src/report/index.js';
import type { ReportData } from '../src/report/index.js';
import { HOSTILE_TOKENS, minimalReportData, syntheticReportData } from './report-synthetic.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'saeflow-report-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The text of every inline <script> element, in order, with its opening tag. */
function scripts(html: string): { open: string; body: string }[] {
  return [...html.matchAll(/(<script[^>]*>)([\s\S]*?)<\/script>/g)].map((m) => ({
    open: m[1]!,
    body: m[2]!,
  }));
}

function chartData(html: string): { charts: Record<string, ChartSpec> } {
  const block = scripts(html).find((s) => s.open.includes('application/json'));
  expect(block).toBeDefined();
  return JSON.parse(block!.body) as { charts: Record<string, ChartSpec> };
}

function canvasIds(html: string): string[] {
  return [...html.matchAll(/<canvas data-chart="([^"]+)"/g)].map((m) => m[1]!);
}

describe('escaping', () => {
  it('escapes markup, ampersands and both quote kinds for HTML text and attributes', () => {
    expect(escapeHtml('</script><img src=x onerror=alert(1)>')).toBe(
      '&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;',
    );
    expect(escapeHtml(`a"b'c&d`)).toBe('a&quot;b&#39;c&amp;d');
    expect(escapeHtml('&amp;')).toBe('&amp;amp;');
  });

  it('makes whitespace, control and bidi characters visible', () => {
    expect(visibleWhitespace('a\nb\tc\r\u0001\u007f\u202e x')).toBe('a↵b→c␍␁␡⟨U+202E⟩ x');
    expect(visibleWhitespace(' the', { spaces: true })).toBe('·the');
    expect(visibleWhitespace('naïve 🐋')).toBe('naïve 🐋');
  });

  it('keeps a JSON data block unbreakable and lossless', () => {
    const value = { tokens: [...HOSTILE_TOKENS, '\u2028\u2029', '<!-- x -->', ']]>'] };
    const text = jsonForScript(value);
    expect(text).not.toMatch(/[<>&\u2028\u2029]/);
    expect(text.toLowerCase()).not.toContain('</script');
    expect(JSON.parse(text)).toEqual(value);
  });

  it('keeps Markdown table cells in one cell and inert', () => {
    expect(escapeMarkdownCell('a|b\nc')).toBe('a\\|b↵c');
    expect(escapeMarkdownCell('<b>*x*</b> `y` [z](u) _w_ ~v~ \\')).toBe(
      '&lt;b&gt;\\*x\\*&lt;/b&gt; \\`y\\` \\[z\\](u) \\_w\\_ \\~v\\~ \\\\',
    );
    expect(escapeMarkdownCell(' a', { spaces: true })).toBe('·a');
  });
});

describe('renderReport on a sweep with dashboards', () => {
  let html: string;
  let markdown: string;
  const data = syntheticReportData();

  beforeAll(async () => {
    ({ html, markdown } = await renderReport(data, dir));
  });

  it('writes report.html and report.md atomically (same text, no temp files left)', async () => {
    expect(await readFile(join(dir, 'report.html'), 'utf8')).toBe(html);
    expect(await readFile(join(dir, 'report.md'), 'utf8')).toBe(markdown);
    expect((await readdir(dir)).sort()).toEqual(['report.html', 'report.md']);
  });

  it('is self-contained: inline scripts and styles only, nothing fetched from anywhere', () => {
    expect(html).not.toMatch(/<script[^>]*\bsrc\s*=/i);
    expect(html).not.toMatch(/<link\b/i);
    const css = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1];
    expect(css).toContain('.tk');
    expect(css).not.toMatch(/@import|url\(/i);
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i);
    expect(html).not.toContain('sourceMappingURL');
    const s = scripts(html);
    expect(s.map((x) => x.open)).toEqual([
      '<script type="application/json" id="report-data">',
      '<script>',
      '<script>',
    ]);
    expect(s[1]!.body).toContain('Chart');
    expect(html.length).toBeLessThan(600_000);
  });

  it('allows exactly its own scripts by hash in the Content-Security-Policy, and no network', () => {
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1];
    expect(csp).toBeDefined();
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-eval');
    const hashes = [...csp!.matchAll(/'sha256-([^']+)'/g)].map((m) => m[1]);
    const executable = scripts(html).filter((x) => x.open === '<script>');
    expect(hashes).toEqual(
      executable.map((x) => createHash('sha256').update(x.body, 'utf8').digest('base64')),
    );
  });

  it('shows hostile tokens as escaped text and never as markup', () => {
    // The three <script> elements are the page's own: no token closed or opened one.
    expect(html.match(/<\/script>/gi)).toHaveLength(3);
    expect(html.match(/<script\b/gi)).toHaveLength(3);
    expect(html).not.toMatch(/<img|<svg/i);
    expect(html).toContain('&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('&lt;script&gt;window.__pwned=1&lt;/script&gt;');
    expect(html).toContain('&quot;&gt;&lt;svg onload=window.__pwned=2&gt;');
    expect(html).toContain('&amp;amp; &#39;quoted&#39; &quot;double&quot;');
    expect(html).toContain('>↵↵</span>');
    expect(html).toContain('⟨U+202E⟩evil');
    expect(html).not.toContain('\u202e');
    // The run name is data too.
    expect(html).toContain('<title>gpt2-sweep &lt;L6 &amp; L8&gt; · SAE evaluation report</title>');
  });

  it('keeps hostile SAE names inside the JSON chart data intact and inert', async () => {
    const hostile = '</script><script>window.__pwned=3</script><!--';
    const d = syntheticReportData();
    const old = d.saes[0]!.name;
    d.saes[0]!.name = hostile;
    d.pareto.ce = d.pareto.ce.map((n) => (n === old ? hostile : n));
    d.pareto.explained_variance = d.pareto.explained_variance.map((n) => (n === old ? hostile : n));
    const { html: page } = await renderReport(d, join(dir, 'hostile-name'));
    expect(page.match(/<\/script>/gi)).toHaveLength(3);
    const specs = chartData(page).charts;
    const frontier = (specs['pareto-ce'] as { series: { points: { name?: string }[] }[] }).series[0]!;
    expect(frontier.points[0]!.name).toBe(hostile);
    expect((specs['train-l0'] as { series: { label: string }[] }).series[0]!.label).toBe(hostile);
  });

  it('highlights tokens in proportion to activation, with the value in a tooltip', () => {
    const d = data.dashboards[1]!;
    const ctx = d.top_contexts[0]!;
    const peak = ctx.activations[ctx.max_index]!;
    const scale = Math.max(d.max_activation, ...d.top_contexts.flatMap((c) => c.activations));
    expect(highlightScale(d)).toBe(scale);
    const span = new RegExp(
      `<span class="tk mx" style="--a:${tokenIntensity(peak, scale).toFixed(2)}" title="${peak.toPrecision(3).replace('.', '\\.')}`,
    );
    expect(html).toMatch(span);
    expect(tokenIntensity(5, 10)).toBe(0.5);
    expect(tokenIntensity(-1, 10)).toBe(0);
    expect(tokenIntensity(20, 10)).toBe(1);
    expect(tokenIntensity(1, 0)).toBe(0);
  });

  it('puts one canvas on the page per chart spec, for every section that has data', () => {
    const specs = chartData(html).charts;
    const ids = canvasIds(html);
    expect(ids.sort()).toEqual(Object.keys(specs).sort());
    const expected = [
      'layers',
      'pareto-ce',
      'pareto-ev',
      'train-loss',
      'train-l0',
      'train-explained_variance',
      'train-dead_features',
      ...data.saes.flatMap((_, i) => [`sae-${i}-density`, `sae-${i}-l0`]),
      ...data.dashboards.map((_, i) => `dash-${i}-hist`),
    ];
    expect(ids.sort()).toEqual(expected.sort());
  });

  it('gives the command that exports the live explorer for an SAE with dashboards, its path escaped', () => {
    const withDashboards = data.saes.find((s) => data.dashboards.some((d) => d.sae === s.name))!;
    const path = withDashboards.path.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    expect(html).toContain(`pipelines/explore-sae.ts --sae ${path}</code>`);
  });

  it("links each SAE's exported explorer from its section, and then says how to serve them", async () => {
    expect(html).not.toContain('Open the live feature explorer');
    const linked = JSON.parse(JSON.stringify(data)) as ReportData;
    for (const s of linked.saes) s.explorer = `explorer/${s.name}/explorer.html`;
    const out = await renderReport(linked, join(dir, 'linked'));
    for (const s of linked.saes) {
      const card = out.html.slice(
        out.html.indexOf(`<article class="card" id="sae-${linked.saes.indexOf(s)}">`),
      );
      expect(card.slice(0, card.indexOf('</article>'))).toContain(
        `<p class="explorer"><a href="explorer/${s.name}/explorer.html">Open the live feature explorer</a>`,
      );
    }
    expect(out.html).toContain('each SAE in the SAEs section links its live explorer');
    expect(out.html).toContain('<code>npx saeflow-serve &lt;this report&#39;s folder&gt;</code>');
    expect(out.html).not.toContain('pipelines/explore-sae.ts --sae');
    expect(out.markdown).toContain(
      `[${linked.saes[0]!.name}](explorer/${linked.saes[0]!.name}/explorer.html)`,
    );
    // One SAE with dashboards but without an explorer: the command comes back.
    delete linked.saes.find((s) => linked.dashboards.some((d) => d.sae === s.name))!.explorer;
    expect((await renderReport(linked, join(dir, 'linked'))).html).toContain(
      'pipelines/explore-sae.ts --sae',
    );
  });

  it('lists SAEs by layer with formatted numbers and the canonical SAEs marked', () => {
    const summary = html.slice(html.indexOf('<section id="summary">'), html.indexOf('<section id="layers">'));
    const names = [...summary.matchAll(/<td class="txt name" data-v="([^"]+)"/g)].map((m) => m[1]);
    expect(names).toEqual([
      'L6-topk-k32-16k',
      'L6-topk-k64-16k',
      'L6-standard-8k',
      'L8-jumprelu-24k',
      'L8-transcoder-mlp',
      'L8-topk-k128-24k',
    ]);
    expect(summary.match(/<tr class="canonical">/g)).toHaveLength(2);
    expect(summary).toContain('<td class="num" data-v="0.9587">0.9587</td>');
    expect(summary).toContain('16,384 <span class="dim">(×21.3)</span>');
    expect(summary).toContain('733 <span class="dim">(8.9%)</span>');
    // The transcoder has no CE metrics: a dash, and an empty sort key so it sorts last.
    expect(summary).toContain('<td class="num" data-v="">—</td>');
  });

  it('reports never-fired features next to dead-by-window in training, and eval counts with their tokens', () => {
    const lines = markdown.split('\n');
    expect(lines).toContain(
      '| SAE | Steps | Tokens | Loss | L0 | Explained var. | Dead (window) | Never fired |',
    );
    const row = lines.find((l) => l.startsWith('| L6-topk-k32-16k | 6,000 |'));
    const last = data.saes.find((s) => s.name === 'L6-topk-k32-16k')!.training_curve.at(-1)!;
    expect(row).toMatch(new RegExp(`\\| ${last.dead_features} \\| ${last.never_fired_features} \\|$`));
    expect(markdown).toContain('it stays 0 until that many steps have run');
    expect(html).toContain('it stays 0 until that many steps have run');
    expect(html).toContain('<dt>dead (no firing in 409,600 eval tokens)</dt>');
    expect(html).toContain('log₁₀ feature density (firings per token, over 409,600 eval tokens)');
  });

  it('writes the same tables to report.md', () => {
    const lines = markdown.split('\n');
    expect(lines[0]).toBe('# gpt2-sweep &lt;L6 &amp; L8&gt;: SAE evaluation report');
    expect(markdown).toContain('- **Evaluation tokens:** 409,600');
    expect(lines).toContain(
      '| Layer | SAE | Hook | Architecture | Width | L0 | Explained var. | CE loss score | KL score | Dead features (over 409,600 eval tokens) |',
    );
    expect(lines).toContain(
      '| 6 | ★ L6-topk-k64-16k | blocks.6.hook\\_resid\\_pre | topk | 16,384 (×21.3) | 64.0 | 0.8420 | 0.9587 | 0.9487 | 40 (0.24%) |',
    );
    expect(lines).toContain(
      '| 8 | L8-transcoder-mlp | blocks.8.ln2.hook\\_normalized | standard (transcoder) | 12,288 (×16) | 58.7 | 0.7120 | — | — | 150 (1.2%) |',
    );
    expect(markdown).toContain(
      '- **L0 vs CE loss score:** L6-topk-k32-16k → L8-jumprelu-24k → L6-topk-k64-16k → L8-topk-k128-24k',
    );
    expect(lines).toContain('| 8 | L8-jumprelu-24k |');
    expect(markdown).toContain('## All metrics');
    expect(markdown).toContain('## Training (last logged values)');
    const dash = lines.find((l) => l.startsWith('| L6-topk-k64-16k | 1207 |'));
    expect(dash).toBeDefined();
    expect(dash).toContain('“&lt;/script&gt;&lt;img·src=x·onerror=alert(1)&gt;” +0.9');
    expect(dash).toContain('“\\|” -0.8');
    // Every table row stays one row: its cell count matches its header's.
    let cells = 0;
    for (const line of lines) {
      if (!line.startsWith('|')) {
        cells = 0;
        continue;
      }
      const n = line.split(/(?<!\\)\|/).length;
      if (cells === 0) cells = n;
      expect(n, line).toBe(cells);
    }
    expect(markdown).not.toMatch(/[<>]/);
  });
});

describe('renderReport on a minimal report', () => {
  it('renders notes instead of empty charts: one SAE, no layer, null CE, no curves or dashboards', async () => {
    const out = join(dir, 'minimal');
    const { html, markdown } = await renderReport(minimalReportData(), out);
    expect(canvasIds(html)).toEqual(['pareto-ev']);
    expect(html).toContain('No CE loss scores (the evaluation had no logits for these SAEs).');
    expect(html).toContain('No SAE has a layer and an L0 or CE loss score to plot.');
    expect(html).toContain('No training curves: these SAEs were not trained in this run.');
    expect(html).toContain('No feature dashboards in this report.');
    expect(html).toContain('No density histogram.');
    expect(markdown).toContain(
      '| — | only | blocks.0.hook\\_mlp\\_out | standard | 3,072 (×4) | 20.5 | 0.5000 | — | — | — |',
    );
    expect(markdown).not.toContain('## Feature dashboards');
    expect(markdown).not.toContain('## Training');
    expect(markdown).toContain('- **L0 vs CE loss score:** none');
  });

  it('renders a report with no SAEs at all', async () => {
    const data: ReportData = { ...minimalReportData(), saes: [] };
    const { html, markdown } = await renderReport(data, join(dir, 'empty'));
    expect(canvasIds(html)).toEqual([]);
    expect(html).toContain('No SAEs were evaluated.');
    expect(markdown).toContain('No SAEs were evaluated.');
  });

  it('re-renders from a saved report-data.json, filling absent optional sections', async () => {
    const out = join(dir, 'from-file');
    const file = join(dir, 'report-data.json');
    const raw = JSON.parse(JSON.stringify(minimalReportData())) as Record<string, unknown>;
    delete raw['dashboards'];
    const sae = (raw['saes'] as Record<string, unknown>[])[0]!;
    delete sae['training_curve'];
    delete sae['density_histogram'];
    await writeFile(file, JSON.stringify(raw));
    const { markdown } = await renderReportFromFile(file, out);
    expect(markdown).toContain('| — | only |');
    expect(await readFile(join(out, 'report.md'), 'utf8')).toBe(markdown);
  });
});

describe('report data validation', () => {
  type Mutation = (d: ReportData) => unknown;
  // Puts a value of the wrong type where the type system would not allow it, as a hand-edited file could.
  const set = (o: object, key: string, v: unknown) => {
    (o as Record<string, unknown>)[key] = v;
  };
  const bad = (mutate: Mutation): unknown => {
    const d = JSON.parse(JSON.stringify(syntheticReportData())) as ReportData;
    mutate(d);
    return d;
  };

  it.each<[Mutation, RegExp]>([
    [(d) => delete (d as Partial<ReportData>).run, /f\.json: run: expected an object, got nothing/],
    [(d) => set(d.run, 'n_eval_tokens', '12'), /run\.n_eval_tokens: expected a finite number/],
    [(d) => (d.saes[1]!.d_sae = 0), /saes\[1\]\.d_sae: expected an integer >= 1, got 0/],
    [(d) => (d.saes[2]!.name = d.saes[0]!.name), /saes\[2\]\.name: duplicate SAE name/],
    [(d) => set(d.saes[0]!.metrics, 'l0', 'x'), /saes\[0\]\.metrics\.l0: expected a finite number/],
    [
      (d) => d.saes[3]!.density_histogram.edges.pop(),
      /saes\[3\]\.density_histogram: needs one more edge than counts, got 50 edges and 50 counts/,
    ],
    [
      (d) => (d.saes[0]!.l0_histogram.edges[5] = 0),
      /saes\[0\]\.l0_histogram\.edges\[5\]: edges must be strictly increasing/,
    ],
    [
      (d) => set(d.saes[0]!, 'explorer', 'https://example.com/x.html'),
      /saes\[0\]\.explorer: expected a relative path inside the report's folder/,
    ],
    [
      (d) => set(d.saes[0]!, 'explorer', '../x/explorer.html'),
      /saes\[0\]\.explorer: expected a relative path/,
    ],
    [(d) => set(d.saes[0]!, 'explorer', '/explorer.html'), /saes\[0\]\.explorer: expected a relative path/],
    [
      (d) => set(d.saes[0]!, 'explorer', 'javascript:alert(1)'),
      /saes\[0\]\.explorer: expected a relative path/,
    ],
    [(d) => (d.pareto.ce = ['nope']), /pareto\.ce\[0\]: "nope" is not the name of an SAE/],
    [(d) => (d.pareto.canonical['6'] = 'gone'), /pareto\.canonical\.6: "gone" is not the name/],
    [(d) => (d.dashboards[0]!.sae = 'missing'), /dashboards\[0\]\.sae: "missing" is not the name/],
    [
      (d) => d.dashboards[1]!.top_contexts[2]!.activations.pop(),
      /dashboards\[1\]\.top_contexts\[2\]: has 24 tokens but 23 activations/,
    ],
    [
      (d) => (d.dashboards[1]!.top_contexts[0]!.max_index = 99),
      /dashboards\[1\]\.top_contexts\[0\]\.max_index: 99 is past the last of 24 tokens/,
    ],
    [
      (d) => set(d.dashboards[0]!.promoted[0]!, 'token', 7),
      /dashboards\[0\]\.promoted\[0\]\.token: expected a string/,
    ],
  ])('rejects bad field %#, naming it', (mutate, message) => {
    const d = bad(mutate);
    expect(() => validateReportData(d, 'f.json')).toThrow(UserError);
    expect(() => validateReportData(d, 'f.json')).toThrow(message);
  });

  it('rejects bad data passed to renderReport before writing anything', async () => {
    const out = join(dir, 'never');
    const d = bad((x) => (x.saes[0]!.layer = -1)) as ReportData;
    await expect(renderReport(d, out)).rejects.toThrow(
      /report data: saes\[0\]\.layer: expected an integer >= 0, got -1/,
    );
    await expect(readdir(out)).rejects.toThrow();
  });

  it('names the file when report-data.json is missing or truncated', async () => {
    const file = join(dir, 'truncated.json');
    await writeFile(file, JSON.stringify(syntheticReportData()).slice(0, 500));
    await expect(loadReportData(file)).rejects.toThrow(UserError);
    await expect(loadReportData(file)).rejects.toThrow(/truncated\.json: not valid JSON/);
    await expect(loadReportData(join(dir, 'absent.json'))).rejects.toThrow(
      /cannot read report data .*absent\.json/,
    );
  });
});

describe('chart specs', () => {
  const data = syntheticReportData();

  it('draws the Pareto frontier through its members in L0 order, the rest as points per layer', () => {
    const spec = paretoChart(data, 'ce_loss_score', data.pareto.ce, 'CE')!;
    const frontier = spec.series[0]!;
    expect(frontier.label).toBe('Pareto frontier');
    expect(frontier.line).toBe(true);
    expect(frontier.points.map((p) => p.name)).toEqual([
      'L6-topk-k32-16k',
      'L8-jumprelu-24k',
      'L6-topk-k64-16k',
      'L8-topk-k128-24k',
    ]);
    expect(frontier.points.map((p) => p.x)).toEqual([32, 45.2, 64, 128]);
    expect(spec.series.slice(1).map((s) => [s.label, s.points.length])).toEqual([
      ['layer 6', 3],
      ['layer 8', 2], // the transcoder has no CE loss score
    ]);
  });

  it('plots L0 and CE loss score by layer on two axes, canonical SAEs joined', () => {
    const spec = layerChart(data)!;
    expect(spec.y.label).toMatch(/^L0/);
    expect(spec.y2?.label).toBe('CE loss score');
    expect(spec.x).toMatchObject({ min: 5.5, max: 8.5 });
    const canonicalL0 = spec.series.find((s) => s.label === 'L0, canonical')!;
    expect(canonicalL0.points).toEqual([
      { x: 6, y: 64, name: 'L6-topk-k64-16k' },
      { x: 8, y: 45.2, name: 'L8-jumprelu-24k' },
    ]);
    expect(spec.series.find((s) => s.label === 'CE loss score, all SAEs')!.right).toBe(true);
  });

  it('has one training line per trained SAE and none without curves', () => {
    expect(trainingChart(data, 'l0')!.series.map((s) => s.label)).toEqual([
      'L6-topk-k32-16k',
      'L6-topk-k64-16k',
      'L8-jumprelu-24k',
    ]);
    expect(trainingChart(minimalReportData(), 'l0')).toBeNull();
  });

  it('plots dead-by-window and never-fired features side by side for each trained SAE', () => {
    const spec = trainingChart(data, 'dead_features')!;
    expect(spec.series.map((s) => s.label)).toEqual([
      'L6-topk-k32-16k: dead (window)',
      'L6-topk-k32-16k: never fired',
      'L6-topk-k64-16k: dead (window)',
      'L6-topk-k64-16k: never fired',
      'L8-jumprelu-24k: dead (window)',
      'L8-jumprelu-24k: never fired',
    ]);
    const [dead, never] = spec.series;
    // In the first window the window count is 0 while thousands of features have not fired yet.
    expect(dead!.points[0]!.y).toBe(0);
    expect(never!.points[0]!.y).toBeGreaterThan(1000);
  });

  it('uses a log axis only for positive values spanning an order of magnitude', () => {
    expect(wantsLog([10, 200])).toBe(true);
    expect(wantsLog([30, 130])).toBe(false);
    expect(wantsLog([0, 100])).toBe(false);
    expect(wantsLog([5])).toBe(false);
  });

  it('excerpts a context around its peak for the Markdown table', () => {
    const tokens = Array.from({ length: 30 }, (_, i) => ` t${i}`);
    const ctx = { tokens, activations: tokens.map(() => 0), max_index: 15 };
    expect(contextExcerpt(ctx)).toBe(
      `… t7 t8 t9 t10 t11 t12 t13 t14 **t15** t16 t17 t18 t19 t20 t21 t22 t23…`,
    );
    expect(contextExcerpt({ tokens: ['a', '*b*', 'c'], activations: [0, 1, 0], max_index: 1 })).toBe(
      'a**\\*b\\***c',
    );
  });
});
