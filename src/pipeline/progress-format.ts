/** Pure formatting for progress lines (kept apart from the timer/terminal shell so it can be tested). */

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

export interface ProgressSnapshot {
  elapsed_s: number;
  items: number;
  tokens: number;
  tokens_per_s: number;
  items_per_s: number;
  total_tokens?: number;
  fraction?: number;
  eta_s?: number;
  extra: Record<string, number>;
}

/** Rates and ETA from counts. The ETA uses the average rate over the whole run: steady and honest. */
export function snapshot(
  elapsedSeconds: number,
  items: number,
  tokens: number,
  totalTokens: number | undefined,
  extra: Record<string, number>,
): ProgressSnapshot {
  const dt = Math.max(elapsedSeconds, 1e-9);
  const snap: ProgressSnapshot = {
    elapsed_s: elapsedSeconds,
    items,
    tokens,
    tokens_per_s: tokens / dt,
    items_per_s: items / dt,
    extra,
  };
  if (totalTokens !== undefined && totalTokens > 0) {
    snap.total_tokens = totalTokens;
    snap.fraction = Math.min(1, tokens / totalTokens);
    snap.eta_s = tokens > 0 ? Math.max(0, (totalTokens - tokens) / snap.tokens_per_s) : undefined;
  }
  return snap;
}

function formatExtra(extra: Record<string, number>): string {
  return Object.entries(extra)
    .map(([k, v]) => `${k} ${Math.abs(v) >= 1e4 || Number.isInteger(v) ? formatCount(v) : v.toPrecision(4)}`)
    .join(' · ');
}

export function formatProgressLine(s: ProgressSnapshot): string {
  const parts = [
    `${formatCount(s.items)} batches`,
    `${formatCount(s.tokens)} tokens`,
    `${formatCount(s.tokens_per_s)} tok/s`,
  ];
  if (s.fraction !== undefined) parts.push(`${(s.fraction * 100).toFixed(1)}%`);
  if (s.eta_s !== undefined) parts.push(`ETA ${formatDuration(s.eta_s)}`);
  parts.push(`elapsed ${formatDuration(s.elapsed_s)}`);
  const extra = formatExtra(s.extra);
  if (extra) parts.push(extra);
  return parts.join(' · ');
}
