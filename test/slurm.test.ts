/**
 * End to end on a real one-node Slurm cluster (test/slurm-cluster.ts): `--array 4` of cache-activations and
 * `--array 3` of a gpt2-resid sweep are submitted as the README says, with their finishing steps as dependent
 * jobs. The merged cache must be the single-machine run's (same manifest, same shard bytes, same rows and
 * values), and the sweep's report must list every SAE. One cache task is stopped mid-run and requeued with
 * `scontrol requeue` (Slurm's SIGTERM, then a fresh start of its script): it must resume and end the same.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activationIds, hookMatrix } from '../src/arrow/activation-batch.js';
import { partDirName } from '../src/cluster/shard-spec.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { readActivationBatches } from '../src/stages/cache/index.js';
import { testIo } from './runner-io.js';
import { type SlurmCluster, slurmUnavailable, startSlurmCluster } from './slurm-cluster.js';

const unavailable = slurmUnavailable();
if (unavailable) console.warn(`skipping the Slurm end-to-end test: ${unavailable}`);

const HOOK = 'blocks.1.hook_resid_pre';
// 8,192 tokens in 72 shards of 115 rows: each of the 4 tasks writes 18, so a task is stopped between shards.
const CACHE = [
  ...['--model', 'tiny-gpt2', '--dataset', 'moby-dick', '--hooks', HOOK, '--context_size', '32'],
  ...['--batch_size', '4', '--max_tokens', '8192', '--shard_size_mb', '0.03'],
];
const NAMES = ['topk-k4', 'topk-k8', 'topk-k16'];
const SWEEP = [
  ...['--model', 'tiny-gpt2', '--saes', '[{"k":4},{"k":8},{"k":16}]', '--architecture', 'topk'],
  ...[
    '--d_sae',
    '128',
    '--training_tokens',
    '4096',
    '--train_batch_size_tokens',
    '512',
    '--context_size',
    '32',
  ],
  ...['--lr', '0.001', '--n_batches_in_buffer', '4'],
];
const BIN = path.resolve('bin/run-pipeline.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | null | undefined | false,
  everyMs = 25,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = probe();
    if (got) return got;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function cacheRows(dir: string): Promise<{ ids: number[]; values: Buffer }> {
  const ids: number[] = [];
  const values: Buffer[] = [];
  for await (const b of readActivationBatches({ path: dir })) {
    const id = activationIds(b)!;
    for (let r = 0; r < b.numRows; r++) ids.push(Number(id.seq[r]) * 1000 + id.pos[r]!, id.token[r]!);
    const m = hookMatrix(b, HOOK, { copy: true });
    values.push(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
  }
  return { ids, values: Buffer.concat(values) };
}

const shardFiles = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.endsWith('.parquet'))
    .sort();

describe.skipIf(unavailable !== null)(
  `Slurm end to end${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    let cluster: SlurmCluster;
    beforeAll(async () => {
      cluster = await startSlurmCluster();
    }, 90_000);
    afterAll(async () => {
      await cluster?.stop();
    }, 60_000);

    const submit = (args: string[]) => {
      const out = execFileSync(process.execPath, [BIN, ...args], { env: cluster.env, encoding: 'utf8' });
      return JSON.parse(out) as { array_job: string; finish_job: string; logs: string };
    };

    it('a 4-task cache array with a requeued task merges into the single run; a 3-task sweep gathers every SAE', async () => {
      const work = mkdtempSync(path.join(tmpdir(), 'saeflow-slurm-runs-'));
      const cacheDir = path.join(work, 'acts');
      const sweepDir = path.join(work, 'sweep');
      const cache = submit(['pipelines/cache-activations.ts', ...CACHE, '--array', '4', '--out', cacheDir]);

      // Task 1 is frozen once it has written a shard, so Slurm's SIGTERM finds it mid-run; `scontrol requeue`
      // then kills it (SIGCONT, SIGTERM) and runs its script again, which must resume the part.
      const task = `${cache.array_job}_1`;
      const part = path.join(cacheDir, partDirName({ index: 1, count: 4 }));
      // Task 1's processes are looked up while it starts (its node process loads for seconds), then frozen
      // as soon as it has written a shard: asking Slurm only then left too little time on a loaded machine,
      // where a task's 18 small shards take well under a second.
      const jobId = await until('task 1 to run', 240_000, () =>
        cluster.run('squeue', ['-h', '-j', task, '-t', 'R', '-o', '%A']).trim(),
      );
      // slurmd learns of a running job a moment after the controller lists it: until then listpids fails.
      const pidsOf = () => {
        try {
          return cluster
            .run('scontrol', ['listpids', jobId])
            .split('\n')
            .slice(1)
            .map((l) => Number(l.trim().split(/\s+/)[0]))
            .filter((p) => Number.isInteger(p) && p > 0);
        } catch {
          return [];
        }
      };
      // Wait until the pipeline's own node process is among them (the batch script starts it).
      const isPipeline = (pid: number) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('cache-activations');
        } catch {
          return false;
        }
      };
      const pids = await until('task 1 to start its pipeline', 60_000, () => {
        const found = pidsOf();
        return found.some(isPipeline) ? found : null;
      });
      await until(
        'task 1 to write a shard',
        240_000,
        () => {
          try {
            return (
              (JSON.parse(readFileSync(path.join(part, 'manifest.json'), 'utf8')) as { shards: unknown[] })
                .shards.length > 0
            );
          } catch {
            return false;
          }
        },
        2,
      );
      expect(pids.length).toBeGreaterThan(0);
      for (const pid of pids) process.kill(pid, 'SIGSTOP');
      const shardsWhenStopped = (
        JSON.parse(readFileSync(path.join(part, 'manifest.json'), 'utf8')) as { shards: unknown[] }
      ).shards.length;
      expect(shardsWhenStopped).toBeLessThan(18);
      cluster.run('scontrol', ['requeue', task]);
      await until('task 1 to be requeued', 120_000, () => cluster.state(task) === 'PENDING');
      // Slurm holds a requeued job back for a while; the test does not wait for that.
      cluster.run('scontrol', ['update', `JobId=${task}`, 'StartTime=now']);
      // The sweep is submitted only now: submitting it took longer, on a loaded machine, than the whole life
      // of cache task 1, which then ended before the test could watch it.
      const sweep = submit([
        ...['pipelines/gpt2-resid.ts', ...SWEEP, '--array', '3', '--out', sweepDir],
        ...['--finish_args', '--model tiny-gpt2 --n_eval_tokens 1024 --n_dashboard_features 0'],
      ]);

      const reference = path.join(work, 'single');
      const single = await runPipeline(
        parseCliArgs(['pipelines/cache-activations.ts', ...CACHE, '--out', reference, '--progress', 'none']),
        testIo(),
      );
      expect(single?.status).toBe('completed');

      await cluster.waitGone([cache.array_job, cache.finish_job], 600_000);
      const finished = JSON.parse(
        readFileSync(path.join(cacheDir, 'finish', 'result.json'), 'utf8'),
      ) as Record<string, unknown>;
      expect(finished).toMatchObject({ parts: 4, shards: 72, tokens: 8192 });
      expect(readFileSync(path.join(cacheDir, 'manifest.json'), 'utf8')).toBe(
        readFileSync(path.join(reference, 'manifest.json'), 'utf8'),
      );
      expect(shardFiles(cacheDir)).toEqual(shardFiles(reference));
      for (const f of shardFiles(reference)) {
        expect(readFileSync(path.join(cacheDir, f)).equals(readFileSync(path.join(reference, f))), f).toBe(
          true,
        );
      }
      const [merged, whole] = [await cacheRows(cacheDir), await cacheRows(reference)];
      expect(merged.ids.length).toBe(8192 * 2);
      expect(merged.ids).toEqual(whole.ids);
      expect(merged.values.equals(whole.values)).toBe(true);

      // The requeued task really was stopped by the signal and resumed from its shards.
      const log = readFileSync(path.join(part, 'run.log'), 'utf8');
      expect(log).toMatch(/SIGTERM: stopping after the work in flight/);
      expect(log).toMatch(/resuming after \d+ cached tokens/);
      expect(JSON.parse(readFileSync(path.join(part, 'run.json'), 'utf8'))).toMatchObject({
        status: 'completed',
        resumed: true,
      });
      expect(readFileSync(path.join(cache.logs, 'task-1.log'), 'utf8')).toMatch(/DUE TO JOB REQUEUE/);

      await cluster.waitGone([sweep.array_job, sweep.finish_job], 600_000);
      const report = path.join(sweepDir, 'finish', 'report.md');
      expect(existsSync(report), readFileSync(path.join(sweep.logs, 'finish.log'), 'utf8')).toBe(true);
      const text = readFileSync(report, 'utf8');
      for (const name of NAMES) expect(text).toMatch(new RegExp(`\\| (★ )?${name} \\|`));
      const gathered = JSON.parse(readFileSync(path.join(sweepDir, 'finish', 'result.json'), 'utf8')) as {
        saes: Array<{ name: string; part: number }>;
      };
      expect(gathered.saes).toEqual(NAMES.map((name, part) => expect.objectContaining({ name, part })));
    }, 900_000);

    it('refuses an array the sweep cannot fill, before submitting anything', () => {
      const out = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-slurm-bad-')), 'sweep');
      const run = spawnSync(
        process.execPath,
        [BIN, 'pipelines/gpt2-resid.ts', ...SWEEP, '--array', '4', '--out', out],
        { env: cluster.env, encoding: 'utf8' },
      );
      expect(run.status).toBe(2);
      expect(run.stderr.trim().split('\n').pop()).toBe(
        'error: --array 4: the sweep has 3 SAEs (--saes), so 4 tasks would leave some without one',
      );
      expect(existsSync(out)).toBe(false);
    }, 60_000);
  },
);
