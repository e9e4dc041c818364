import { appendFileSync } from 'node:fs';

export type LogSink = (line: string) => void;

/**
 * Human-readable log lines: to stderr (so stdout stays clean for results) and to the run's `run.log`.
 * `beforeWrite` lets a live progress line clear itself first so log lines do not interleave with it.
 */
export class Logger {
  beforeWrite: (() => void) | null = null;
  afterWrite: (() => void) | null = null;

  constructor(
    private readonly prefix: string,
    private readonly logFile: string | null,
    private readonly sink: LogSink = (line) => process.stderr.write(`${line}\n`),
  ) {}

  info(message: string): void {
    this.write('info', message);
  }

  warn(message: string): void {
    this.write('warn', message);
  }

  private write(level: 'info' | 'warn', message: string): void {
    const stamp = new Date().toISOString();
    if (this.logFile) appendFileSync(this.logFile, `${stamp} ${level} ${message}\n`);
    this.beforeWrite?.();
    this.sink(`[${this.prefix}]${level === 'warn' ? ' warning:' : ''} ${message}`);
    this.afterWrite?.();
  }
}
