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
