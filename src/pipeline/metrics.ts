import { appendFileSync } from 'node:fs';

/**
 * Appends one JSON object per line to `metrics.jsonl`. Synchronous appends: a record is on disk as soon
 * as `write` returns, so an interrupted run keeps every metric it reported.
 */
export class MetricsWriter {
  private readonly start = Date.now();
  constructor(readonly path: string | null) {}

  write(event: string, values: Record<string, unknown>): void {
    if (!this.path) return;
    const record = {
      event,
      time: new Date().toISOString(),
      elapsed_s: (Date.now() - this.start) / 1000,
      ...values,
    };
    appendFileSync(this.path, `${JSON.stringify(record)}\n`);
  }
}
