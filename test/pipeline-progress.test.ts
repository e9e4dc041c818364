import { describe, expect, it } from 'vitest';
import { formatDuration, formatProgressLine, snapshot } from '../src/pipeline/progress-format.js';

describe('progress formatting', () => {
  it('computes rate and ETA from counts', () => {
    const s = snapshot(10, 20, 5000, 20000, {});
    expect(s.tokens_per_s).toBe(500);
    expect(s.fraction).toBe(0.25);
    expect(s.eta_s).toBe(30);
  });

  it('has no ETA without a total', () => {
    const s = snapshot(10, 20, 5000, undefined, { loss: 0.123456 });
    expect(s.eta_s).toBeUndefined();
    expect(formatProgressLine(s)).toBe('20 batches · 5000 tokens · 500 tok/s · elapsed 10s · loss 0.1235');
  });

  it('formats durations', () => {
    expect(formatDuration(59.4)).toBe('59s');
    expect(formatDuration(61)).toBe('1m01s');
    expect(formatDuration(3 * 3600 + 5 * 60)).toBe('3h05m');
    expect(formatDuration(Number.NaN)).toBe('?');
  });

  it('shows percentage and ETA when the total is known', () => {
    expect(formatProgressLine(snapshot(2, 4, 1.5e6, 3e6, {}))).toBe(
      '4 batches · 1.50M tokens · 750.0k tok/s · 50.0% · ETA 2s · elapsed 2s',
    );
  });
});
