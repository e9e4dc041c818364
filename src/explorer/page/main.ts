/**
 * The explorer page: loads explorer.json, the tokenizer and model.onnx from its own folder, runs the model
 * and SAE encoder with onnxruntime-web (WebAssembly, one thread unless the page is cross-origin isolated)
 * on the typed text, and shows each token's top features; a feature opens its dashboard.
 *
 * `#status` carries the state (`data-state`: loading, ready, running, done, error), the last run's token
 * count and milliseconds, and what runs them (`data-provider`, `data-threads`), so a test or a reader can
 * tell when results are on the page, how fast they came and on what.
 *
 * The bundle is also the script of onnxruntime's WebAssembly threads: it starts its workers from its own
 * URL (import.meta.url, this file), so everything here that touches the page runs only where there is one.
 */
import * as ort from 'onnxruntime-web/wasm';
import type { FeatureDashboard } from '../../report/types.js';
import { MANIFEST_FILE } from '../manifest.js';
import type { ExplorerManifest } from '../manifest.js';
import { renderDashboard, renderSearch, renderTokens } from './render.js';
import { loadPageTokenizer } from './tokenize.js';
import { topFeatures } from './top-k.js';

const $ = <T extends HTMLElement>(selector: string): T => {
  const e = document.querySelector<T>(selector);
  if (!e) throw new Error(`explorer.html lacks ${selector}`);
  return e;
};

function setStatus(state: string, text: string): void {
  const status = $('#status');
  status.dataset['state'] = state;
  status.textContent = text;
}

async function fetchJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

/** The execution provider that ran: WebGPU when asked for and the browser has an adapter, else WebAssembly. */
let provider = 'wasm';

async function createSession(bytes: Uint8Array, webgpu: boolean): Promise<ort.InferenceSession> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (webgpu && gpu && (await gpu.requestAdapter().catch(() => null))) {
    try {
      // Severity 3 (errors): onnxruntime warns at every WebGPU session that it keeps shape ops on the CPU,
      // which it does on purpose.
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: ['webgpu'],
        logSeverityLevel: 3,
      });
      provider = 'webgpu';
      return session;
    } catch {
      // A browser can offer an adapter that onnxruntime cannot use; WebAssembly always works.
    }
  }
  // Threads that wait without spinning: in a browser the cores are shared with everything else, and on
  // this project's busy 2-core machine spinning made the threaded page slower still (43 against 58
  // tokens/s at GPT-2 small's shape, bench/explorer.ts with spinning made switchable to measure it).
  return ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'],
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
}

/**
 * WebAssembly threads: only a cross-origin-isolated page has SharedArrayBuffer (saeflow-serve sends the
 * headers; a plain static server does not), else onnxruntime would warn and run one thread anyway. Half
 * the cores, up to 4, as onnxruntime-web's own default: the browser and everything else on the machine
 * keep the other half. On this project's busy 2-core machine that is 1, which was also the fastest there
 * (README, "Size and speed").
 */
function wasmThreads(): number {
  if (!globalThis.crossOriginIsolated) return 1;
  const cores = navigator.hardwareConcurrency || 1;
  // `explorer.html?threads=N` overrides it, up to the number of cores.
  const asked = Number(new URLSearchParams(location.search).get('threads'));
  if (Number.isInteger(asked) && asked >= 1) return Math.min(asked, cores);
  return Math.max(1, Math.min(4, Math.ceil(cores / 2)));
}

function runsOn(provider: string, threads: number): string {
  if (provider === 'webgpu') return 'WebGPU';
  return `WebAssembly, ${threads} thread${threads === 1 ? '' : 's'}${threads === 1 && !globalThis.crossOriginIsolated ? ' (the server sends no cross-origin isolation)' : ''}`;
}

async function start(): Promise<void> {
  const manifest = await fetchJson<ExplorerManifest>(MANIFEST_FILE);
  // Only our own copy of the WebAssembly, never a CDN's.
  ort.env.wasm.wasmPaths = { wasm: new URL(manifest.runtime.wasm, document.baseURI).href };
  const threads = wasmThreads();
  ort.env.wasm.numThreads = threads;
  const [tokenizer, session, dashboards] = await Promise.all([
    loadPageTokenizer(manifest),
    fetch(manifest.graph.file)
      .then((r) => {
        if (!r.ok) throw new Error(`${manifest.graph.file}: HTTP ${r.status}`);
        return r.arrayBuffer();
      })
      .then((bytes) => createSession(new Uint8Array(bytes), manifest.runtime.webgpu)),
    manifest.dashboards ? fetchJson<FeatureDashboard[]>(manifest.dashboards.file) : Promise.resolve([]),
  ]);
  const byFeature = new Map(dashboards.map((d) => [d.feature, d]));
  const special = new Set(manifest.special_ids);
  $('#about').textContent =
    `${manifest.sae.architecture} SAE ${manifest.sae.name} (${manifest.sae.d_sae} features) at ` +
    `${manifest.sae.hook_name_out ? `${manifest.sae.hook_name} → ${manifest.sae.hook_name_out}` : manifest.sae.hook_name}` +
    ` of ${manifest.model.name}; ${manifest.graph.weights} weights on ${runsOn(provider, threads)}; ` +
    (manifest.dashboards ? `${manifest.dashboards.features} feature dashboards.` : 'no feature dashboards.');

  const status = $('#status');
  const text = $<HTMLTextAreaElement>('#text');
  const button = $<HTMLButtonElement>('#run');
  const tbody = $('#tokens tbody');
  const dashBox = $('#dashboard');
  let runs = 0;
  let busy: Promise<void> = Promise.resolve();

  const open = (feature: number): void => {
    for (const b of document.querySelectorAll('button.feat.selected')) b.classList.remove('selected');
    for (const b of document.querySelectorAll<HTMLElement>(`button.feat[data-feature="${feature}"]`)) {
      b.classList.add('selected');
    }
    renderDashboard(dashBox, feature, byFeature.get(feature), dashboards.length);
  };

  const run = async (): Promise<void> => {
    const ids = [...(manifest.bos_id === null ? [] : [manifest.bos_id]), ...tokenizer.encode(text.value)];
    const cut = ids.slice(0, manifest.context_size);
    if (cut.length === 0) {
      tbody.replaceChildren();
      setStatus('done', 'no tokens');
      return;
    }
    setStatus('running', `running ${cut.length} tokens…`);
    const started = performance.now();
    const out = await session.run({
      [manifest.graph.input]: new ort.Tensor('int32', Int32Array.from(cut), [1, cut.length]),
    });
    const ms = performance.now() - started;
    const features = out[manifest.graph.features]!;
    const rows = topFeatures(features.data as Float32Array, manifest.sae.d_sae, manifest.top_k);
    features.dispose();
    renderTokens(
      tbody,
      cut.map((id, i) => ({
        id,
        text: tokenizer.decodeToken(id),
        special: special.has(id),
        features: rows[i]!,
      })),
      (f) => byFeature.has(f),
    );
    runs++;
    status.dataset['tokens'] = String(cut.length);
    status.dataset['ms'] = ms.toFixed(1);
    status.dataset['runs'] = String(runs);
    const note = ids.length > cut.length ? ` (cut to the SAE's context of ${manifest.context_size})` : '';
    setStatus('done', `${cut.length} tokens in ${ms.toFixed(0)} ms${note}`);
  };
  // One run at a time, in order: a run started while another is in flight waits for it.
  const queue = (): void => {
    busy = busy.then(run).catch((e: unknown) => setStatus('error', `error: ${(e as Error).message}`));
  };

  button.addEventListener('click', queue);
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) queue();
  });
  tbody.addEventListener('click', (e) => {
    const b = (e.target as HTMLElement).closest<HTMLElement>('button.feat');
    if (b?.dataset['feature'] !== undefined) open(Number(b.dataset['feature']));
  });
  const search = $<HTMLInputElement>('#promotes');
  search.disabled = dashboards.length === 0;
  if (dashboards.length === 0) search.placeholder = 'no dashboards to search';
  search.addEventListener('input', () => renderSearch($('#search-results'), search.value, dashboards, open));
  status.dataset['provider'] = provider;
  status.dataset['threads'] = String(provider === 'wasm' ? threads : 0);
  button.disabled = false;
  setStatus('ready', 'ready');
  queue();
}

if (typeof document !== 'undefined') {
  start().catch((e: unknown) => setStatus('error', `error: ${(e as Error).message}`));
}
