import type { MetricsWriter } from './metrics.js';
import type { Logger } from './logger.js';
import { formatProgressLine, snapshot, type ProgressSnapshot } from './progress-format.js';

export type ProgressDisplay = 'tty' | 'plain' | 'none';

export interface ProgressOptions {
  name: string;
  display: ProgressDisplay;
  logger: Logger;
  metrics: MetricsWriter;
  /** Plain log lines and `progress` records in metrics.jsonl are written at this interval. */
  logEverySeconds: number;
  stream?: NodeJS.WriteStream;
  now?: () => number;
}

/**
 * Tracks how far a run is: batches, tokens, rate, ETA when a total is known, plus any numbers a stage
 * reports (loss, L0...). On a terminal it redraws one live line; otherwise it writes a plain log line
 * every `logEverySeconds`. Either way the same numbers go to metrics.jsonl.
 */
export class Progress {
  private items = 0;
  private tokens = 0;
  private totalTokens: number | undefined;
  private extra: Record<string, number> = {};
  private started: number;
  private redrawTimer: NodeJS.Timeout | null = null;
  private recordTimer: NodeJS.Timeout | null = null;
  private lineShown = false;
  private readonly now: () => number;
  private readonly stream: NodeJS.WriteStream;

  constructor(private readonly options: ProgressOptions) {
    this.now = options.now ?? (() => performance.now());
    this.stream = options.stream ?? process.stderr;
    this.started = this.now();
    if (options.display === 'tty') {
      options.logger.beforeWrite = () => this.clearLine();
      options.logger.afterWrite = () => this.draw();
    }
  }

  start(): void {
    if (this.options.display === 'tty') {
      this.redrawTimer = setInterval(() => this.draw(), 250);
      this.redrawTimer.unref();
    }
    this.recordTimer = setInterval(() => this.record(false), this.options.logEverySeconds * 1000);
    this.recordTimer.unref();
  }

  /**
   * Starts a new phase of a run (e.g. evaluation after training): counts, rate and ETA start over, with
   * `total` tokens expected. The numbers so far are recorded first.
   */
  startPhase(name: string, total?: number): void {
    this.record(false);
    this.options.metrics.write('phase', { phase: name, total_tokens: total });
    this.options.logger.info(`phase: ${name}`);
    this.items = 0;
    this.tokens = 0;
    this.extra = {};
    this.totalTokens = total;
    this.started = this.now();
  }

  /** Total tokens the run will process, when known (enables % and ETA). */
  setTotal(tokens: number | undefined): void {
    this.totalTokens = tokens;
  }

  advance(counts: { items?: number; tokens?: number }): void {
    this.items += counts.items ?? 0;
    this.tokens += counts.tokens ?? 0;
  }

  /** Latest values of stage-specific numbers (loss, l0, ...), shown and recorded with the progress. */
  report(values: Record<string, number>): void {
    Object.assign(this.extra, values);
  }

  snapshot(): ProgressSnapshot {
    return snapshot((this.now() - this.started) / 1000, this.items, this.tokens, this.totalTokens, {
      ...this.extra,
    });
  }

  /** Final record and line; stops the timers. */
  finish(status: string): ProgressSnapshot {
    this.stopTimers();
    this.clearLine();
    if (this.options.display === 'tty') {
      this.options.logger.beforeWrite = null;
      this.options.logger.afterWrite = null;
    }
    const snap = this.snapshot();
    this.options.metrics.write('progress', { ...flatten(snap), final: true, status });
    if (this.options.display !== 'none') this.options.logger.info(`${status}: ${formatProgressLine(snap)}`);
    return snap;
  }

  private stopTimers(): void {
    if (this.redrawTimer) clearInterval(this.redrawTimer);
    if (this.recordTimer) clearInterval(this.recordTimer);
    this.redrawTimer = this.recordTimer = null;
  }

  private record(final: boolean): void {
    const snap = this.snapshot();
    this.options.metrics.write('progress', { ...flatten(snap), final });
    if (this.options.display === 'plain') this.options.logger.info(`progress: ${formatProgressLine(snap)}`);
  }

  private draw(): void {
    if (this.options.display !== 'tty' || this.redrawTimer === null) return;
    const columns = this.stream.columns ?? 120;
    const line = `[${this.options.name}] ${formatProgressLine(this.snapshot())}`.slice(
      0,
      Math.max(20, columns - 1),
    );
    this.stream.write(`\r\x1b[2K${line}`);
    this.lineShown = true;
  }

  private clearLine(): void {
    if (this.lineShown) {
      this.stream.write('\r\x1b[2K');
      this.lineShown = false;
    }
  }
}

function flatten(s: ProgressSnapshot): Record<string, number | undefined> {
  const { extra, ...rest } = s;
  return { ...rest, ...extra };
}
