import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = path.resolve('bin/run-pipeline.js');

function run(args: string[], onStderr?: (text: string, child: ReturnType<typeof spawn>) => void) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      onStderr?.(stderr, child);
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('run-pipeline CLI', () => {
  it('exits 2 with a one-line message and no stack trace on a user error', async () => {
    const r = await run(['test/pipelines/slow-count.ts', '--count', 'many']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: Option --count: expected integer >= 0 or none, got "many"\.\n$/);
  });

  it('Ctrl-C stops the run, exits 130 and says how to resume', async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-cli-')), 'run');
    let sent = false;
    const r = await run(
      [
        'test/pipelines/slow-count.ts',
        '--count',
        'none',
        '--delay_ms',
        '5',
        '--out',
        dir,
        '--log_every',
        '0.2',
      ],
      (stderr, child) => {
        if (!sent && /progress/.test(stderr)) {
          sent = true;
          child.kill('SIGINT');
        }
      },
    );
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/Ctrl-C: stopping/);
    expect(r.stderr).toMatch(/Resume with: npx run-pipeline test\/pipelines\/slow-count\.ts --resume /);
    expect(JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8')).status).toBe('interrupted');
    // Plain (non-TTY) progress lines were written, and the same numbers went to metrics.jsonl.
    expect(r.stderr).toMatch(/\[slow-count\] progress: \d+ batches · \d+ tokens · [\d.]+k? tok\/s/);
    const progress = readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((m) => m.event === 'progress');
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.at(-1).tokens).toBeGreaterThan(0);
  });
});
