/**
 * Flow control shared by the sources and the asynchronous stages of one run.
 *
 * RxJS pushes: a source that emits as fast as it can makes every `concatMap` downstream of it buffer
 * without bound. Instead, sources pull from an async iterable and emit only while the number of
 * items queued or being processed in asynchronous stages (`pending`) is below `maxInFlight`.
 * Asynchronous stages count an item as pending from the moment it reaches them until their outputs for
 * it have been delivered downstream. Because each stage counts in its own units, a stage that
 * aggregates (e.g. a shuffle buffer) never deadlocks the source: its buffer is bounded by its own options.
 *
 * The same object carries the stop signal (Ctrl-C): sources stop pulling and complete, so every stage
 * downstream flushes what it holds.
 */
export class Flow {
  private pendingCount = 0;
  private peak = 0;
  private waiters: Array<() => void> = [];
  private readonly abort = new AbortController();

  constructor(readonly maxInFlight: number = 4) {
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
      throw new RangeError(`maxInFlight must be a positive integer, got ${maxInFlight}`);
    }
  }

  /** Items currently queued or being processed in asynchronous stages. */
  get pending(): number {
    return this.pendingCount;
  }

  /** Highest `pending` seen so far (for tests and metrics). */
  get peakPending(): number {
    return this.peak;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  /** Ask sources to stop pulling; what is already in flight is still processed. */
  stop(): void {
    if (!this.abort.signal.aborted) this.abort.abort();
    this.wake();
  }

  add(n: number): void {
    this.pendingCount += n;
    if (this.pendingCount > this.peak) this.peak = this.pendingCount;
    if (n < 0) this.wake();
  }

  /** Resolves once a source may emit one more item (or the run is stopping). */
  async ready(): Promise<void> {
    while (this.pendingCount >= this.maxInFlight && !this.stopped) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
