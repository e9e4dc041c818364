/** A RunnerIo for tests: no TTY, stdout collected, and a signal emitter the test can fire SIGINT on. */
import { EventEmitter } from 'node:events';
import type { RunnerIo } from '../src/pipeline/runner.js';

export function testIo(signals = new EventEmitter(), stdout: string[] = []): RunnerIo {
  return {
    stdout: (text) => stdout.push(text),
    signals: signals as unknown as RunnerIo['signals'],
    isTTY: false,
    cwd: process.cwd(),
  };
}

/**
 * Emits `signal` once the runner has installed its handler (a fixed delay can come before that on a busy
 * machine, and the signal then reaches no handler), plus a short pause so the run is under way.
 */
export async function emitWhenHandled(signals: EventEmitter, signal: string): Promise<void> {
  const started = Date.now();
  while (signals.listenerCount(signal) === 0 && Date.now() - started < 30_000) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  signals.emit(signal);
}
