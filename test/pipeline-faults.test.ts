import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { main } from '../src/pipeline/cli.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { emitWhenHandled, testIo } from './runner-io.js';

const SLOW = 'test/pipelines/slow-count.ts';
const BAD = 'test/pipelines/bad-input.ts';
const tmp = () => mkdtempSync(path.join(tmpdir(), 'saeflow-faults-'));
const runJson = (dir: string) =>
  JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8')) as { status: string };

/** Runs the CLI in-process and returns its exit code and what it wrote to stderr. */
async function cli(argv: string[]): Promise<{ code: number; stderr: string }> {
  const chunks: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, stderr: chunks.join('') };
  } finally {
    process.stderr.write = write;
  }
}

describe('signals', () => {
  it('SIGTERM stops a run like Ctrl-C: run.json says interrupted, the signal is reported, --resume continues', async () => {
    const dir = path.join(tmp(), 'run');
    const signals = new EventEmitter();
    const running = runPipeline(
      parseCliArgs([SLOW, '--count', '200', '--delay_ms', '3', '--out', dir]),
      testIo(signals),
    );
    await emitWhenHandled(signals, 'SIGTERM');
    const first = await running;
    expect(first?.status).toBe('interrupted');
    expect(first?.signal).toBe('SIGTERM');
    expect(signals.listenerCount('SIGTERM')).toBe(0);
    expect(runJson(dir).status).toBe('interrupted');
    const done = (JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { done: number }).done;
    expect(done).toBeLessThan(200);
    const resumed = await runPipeline(parseCliArgs([SLOW, '--resume', dir]), testIo());
    expect(resumed?.result).toMatchObject({ done: 200, started_at: done });
  });

  it('a real SIGTERM to run-pipeline exits with 143 and leaves run.json interrupted', async () => {
    const dir = path.join(tmp(), 'run');
    const child = spawn(
      process.execPath,
      ['bin/run-pipeline.js', SLOW, '--count', 'none', '--delay_ms', '5', '--out', dir, '--backend', 'cpu'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      // Signal once the runner is streaming (its handlers are installed by then).
      if (stderr.includes('compute backend') && !child.killed) setTimeout(() => child.kill('SIGTERM'), 300);
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(143);
    expect(stderr).toMatch(/SIGTERM: stopping/);
    expect(runJson(dir).status).toBe('interrupted');
  }, 30_000);
});

describe('--out that cannot be a run directory', () => {
  it('an existing file: one-line error, exit code 2', async () => {
    const file = path.join(tmp(), 'file.txt');
    writeFileSync(file, 'x');
    const r = await cli([SLOW, '--count', '1', '--out', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: --out .*file\.txt: is a file, not a directory\n$/);
    expect(readFileSync(file, 'utf8')).toBe('x');
  });

  it('a path below an existing file', async () => {
    const file = path.join(tmp(), 'file.txt');
    writeFileSync(file, 'x');
    const r = await cli([SLOW, '--count', '1', '--out', path.join(file, 'run')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: --out .*file\.txt is a file, not a directory\n$/);
  });

  it('a path under /sys', async () => {
    const r = await cli([SLOW, '--count', '1', '--out', '/sys/saeflow-test/run']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error: --out \/sys\/saeflow-test\/run: cannot write the run directory \(.*\)\n$/,
    );
  });

  it('a path under /proc ends at once instead of hanging', async () => {
    const r = await cli([SLOW, '--count', '1', '--out', '/proc/saeflow-test']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: --out \/proc\/saeflow-test: cannot write the run directory/);
  }, 10_000);

  // root writes into a mode-555 directory regardless, so only other users can see this refusal.
  it.skipIf(process.getuid?.() === 0)('a read-only directory', async () => {
    const parent = tmp();
    chmodSync(parent, 0o555);
    try {
      const r = await cli([SLOW, '--count', '1', '--out', path.join(parent, 'run')]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/cannot write the run directory \(permission denied\)\n$/);
    } finally {
      chmodSync(parent, 0o755);
    }
  });
});

describe('a run that fails on bad input', () => {
  it('removes the directory it created, so the same --out works on a retry', async () => {
    const parent = tmp();
    const dir = path.join(parent, 'a', 'run');
    for (const fail of ['build', 'stream']) {
      const r = await cli([BAD, '--fail', fail, '--out', dir]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^error: bad (option|input) found/m);
      expect(existsSync(path.join(parent, 'a'))).toBe(false);
    }
    expect((await cli([BAD, '--fail', 'never', '--out', dir])).code).toBe(0);
    expect(runJson(dir).status).toBe('completed');
  });

  it('an existing empty --out directory is emptied again, not removed', async () => {
    const dir = path.join(tmp(), 'run');
    mkdirSync(dir);
    expect((await cli([BAD, '--out', dir])).code).toBe(2);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('keeps the directory when the run had written an output', async () => {
    const dir = path.join(tmp(), 'run');
    expect((await cli([BAD, '--fail', 'after_output', '--out', dir])).code).toBe(2);
    expect(existsSync(path.join(dir, 'output.bin'))).toBe(true);
    expect(runJson(dir).status).toBe('failed');
  });
});
