import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline, type RunnerIo } from '../src/pipeline/runner.js';
import { emitWhenHandled } from './runner-io.js';

const PIPELINE = 'test/pipelines/slow-count.ts';

function io(signals = new EventEmitter()): RunnerIo & { out: string[]; signals: EventEmitter } {
  const out: string[] = [];
  return {
    out,
    stdout: (t) => out.push(t),
    signals: signals as unknown as RunnerIo['signals'] & EventEmitter,
    isTTY: false,
    cwd: process.cwd(),
  } as RunnerIo & { out: string[]; signals: EventEmitter };
}

const tmp = () => mkdtempSync(path.join(tmpdir(), 'saeflow-runner-'));
const readJsonl = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('runner', () => {
  it('writes the resolved config, run info, metrics, log and result into the run directory', async () => {
    const dir = path.join(tmp(), 'run');
    const cfgFile = path.join(tmp(), 'c.json');
    writeFileSync(cfgFile, JSON.stringify({ label: 'from-file', nested: { depth: 5 } }));
    const args = parseCliArgs([
      PIPELINE,
      '--count',
      '7',
      '--config',
      cfgFile,
      '--nested.depth',
      '6',
      '--out',
      dir,
      '--backend',
      'cpu',
    ]);
    const r = io();
    const outcome = await runPipeline(args, r);
    expect(outcome?.status).toBe('completed');
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(config).toEqual({
      count: 7,
      delay_ms: 1,
      label: 'from-file',
      mode: 'fast',
      nested: { depth: 6, flag: false },
    });
    const run = JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8'));
    expect(run.status).toBe('completed');
    expect(run.backend.name).toBe('cpu');
    expect(run.backend.threads).toBe(1);
    const metrics = readJsonl(path.join(dir, 'metrics.jsonl'));
    expect(metrics[0]?.event).toBe('start');
    const final = metrics.find((m) => m.event === 'progress' && m.final === true);
    expect(final).toMatchObject({ items: 7, tokens: 7, total_tokens: 7, fraction: 1 });
    expect(readFileSync(path.join(dir, 'run.log'), 'utf8')).toMatch(/compute backend: cpu/);
    expect(JSON.parse(readFileSync(path.join(dir, 'result.json'), 'utf8'))).toMatchObject({
      done: 7,
      depth: 6,
    });
    expect(r.out.join('')).toMatch(/"done": 7/);
  });

  it('stops cleanly on SIGINT, records the interruption, and resumes where it stopped', async () => {
    const dir = path.join(tmp(), 'run');
    const signals = new EventEmitter();
    const r = io(signals);
    const args = parseCliArgs([PIPELINE, '--count', '200', '--delay_ms', '3', '--out', dir]);
    const running = runPipeline(args, r);
    await emitWhenHandled(signals, 'SIGINT');
    const first = await running;
    expect(first?.status).toBe('interrupted');
    expect(signals.listenerCount('SIGINT')).toBe(0);
    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8'));
    expect(state.done).toBeGreaterThan(0);
    expect(state.done).toBeLessThan(200);
    expect(JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8')).status).toBe('interrupted');
    expect(readFileSync(path.join(dir, 'run.log'), 'utf8')).toMatch(
      /Resume with: npx run-pipeline .*--resume/,
    );

    const resumed = await runPipeline(parseCliArgs([PIPELINE, '--resume', dir]), io());
    expect(resumed?.status).toBe('completed');
    expect(resumed?.result).toMatchObject({ done: 200, started_at: state.done });
  });

  it('refuses to overwrite an existing run and to resume a directory that is not a run', async () => {
    const dir = path.join(tmp(), 'run');
    await runPipeline(parseCliArgs([PIPELINE, '--count', '1', '--out', dir]), io());
    await expect(runPipeline(parseCliArgs([PIPELINE, '--out', dir]), io())).rejects.toThrow(
      /already holds a run.*--resume/,
    );
    await expect(runPipeline(parseCliArgs([PIPELINE, '--resume', tmp()]), io())).rejects.toThrow(
      /not a run directory/,
    );
  });

  it('reports a missing pipeline file, a bad config file and an unknown option', async () => {
    await expect(runPipeline(parseCliArgs(['nope.ts']), io())).rejects.toThrow(
      /Pipeline file not found: nope\.ts/,
    );
    const bad = path.join(tmp(), 'bad.json');
    writeFileSync(bad, '{ not json');
    await expect(runPipeline(parseCliArgs([PIPELINE, '--config', bad]), io())).rejects.toThrow(
      /bad\.json: not valid JSON/,
    );
    await expect(runPipeline(parseCliArgs([PIPELINE, '--cuont', '3']), io())).rejects.toThrow(
      /Unknown option --cuont.*--count/,
    );
    expect(existsSync('runs/slow-count')).toBe(false);
  });

  it('prints help with every option and default', async () => {
    const r = io();
    expect(await runPipeline(parseCliArgs([PIPELINE, '--help']), r)).toBeNull();
    const help = r.out.join('');
    expect(help).toMatch(/--delay_ms <number >= 0>\s+delay of the slow stage per item \(default: 1\)/);
    expect(help).toMatch(/--nested\.flag <boolean>/);
    expect(help).toMatch(/--backend <auto\|tensorflow\|wasm\|cpu\|cuda>/);
  });
});
