/**
 * A one-node Slurm cluster for the end-to-end tests, started from scratch in a temporary directory: munged with
 * a generated key, slurmctld and slurmd from a generated slurm.conf with this machine's CPUs and memory, and
 * plugins that need neither systemd nor cgroups (proctrack/linuxproc, task/none, no accounting), so it runs in
 * a container. Every command the tests run gets SLURM_CONF pointing at it.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, hostname, tmpdir, totalmem, userInfo } from 'node:os';
import path from 'node:path';

export const SLURM_COMMANDS = [
  'munged',
  'slurmctld',
  'slurmd',
  'sbatch',
  'squeue',
  'scontrol',
  'scancel',
  'sinfo',
];

const SEARCH = [
  '/usr/sbin',
  '/usr/bin',
  '/sbin',
  '/bin',
  '/usr/local/sbin',
  '/usr/local/bin',
  ...(process.env.PATH ?? '').split(':'),
];

function which(cmd: string): string | null {
  for (const dir of SEARCH) if (dir && existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  return null;
}

/** Why the cluster cannot start here, or null when it can. */
export function slurmUnavailable(): string | null {
  const missing = SLURM_COMMANDS.filter((c) => which(c) === null);
  if (missing.length > 0) {
    return `Slurm is not installed (${missing.join(', ')} missing): apt-get install slurm-wlm munge, as .ci/run does`;
  }
  if (process.getuid?.() !== 0)
    return 'the one-node Slurm cluster needs root (slurmd starts jobs as their user)';
  return null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export interface SlurmCluster {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  /** Runs a Slurm command against this cluster and returns its stdout. */
  run(cmd: string, args: string[]): string;
  /** The state of a job or array task (`123_1`), '' once it has left the queue. */
  state(job: string): string;
  /** Waits until every given job has left the queue (or throws after `timeoutMs`, with the logs' tails). */
  waitGone(jobs: string[], timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startSlurmCluster(): Promise<SlurmCluster> {
  const dir = mkdtempSync(path.join(tmpdir(), 'saeflow-slurm-'));
  chmodSync(dir, 0o755);
  const munge = path.join(dir, 'munge');
  mkdirSync(munge, { mode: 0o711 });
  const key = path.join(munge, 'munge.key');
  writeFileSync(key, randomBytes(1024), { mode: 0o400 });
  const socket = path.join(munge, 'munge.socket');
  for (const d of ['state', 'spool']) mkdirSync(path.join(dir, d));
  const host = hostname().split('.')[0]!;
  const user = userInfo().username;
  const [ctldPort, dPort] = [await freePort(), await freePort()];
  const memMb = Math.floor((totalmem() / 2 ** 20) * 0.8);
  const conf = path.join(dir, 'slurm.conf');
  writeFileSync(
    conf,
    [
      'ClusterName=saeflowtest',
      // Addresses fixed to loopback: a container's hostname need not resolve.
      `SlurmctldHost=${host}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${dPort}`,
      `SlurmUser=${user}`,
      `SlurmdUser=${user}`,
      'AuthType=auth/munge',
      `AuthInfo=socket=${socket}`,
      'CredType=cred/munge',
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd.pid`,
      `SlurmctldLogFile=${dir}/slurmctld.log`,
      `SlurmdLogFile=${dir}/slurmd.log`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'SchedulerParameters=sched_interval=1',
      'ReturnToService=2',
      'MpiDefault=none',
      'SwitchType=switch/none',
      'KillWait=30',
      `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus().length} RealMemory=${memMb} State=UNKNOWN`,
      `PartitionName=test Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
      '',
    ].join('\n'),
  );
  const env = { ...process.env, SLURM_CONF: conf };
  const daemons: ChildProcess[] = [];
  const daemon = (cmd: string, args: string[]) => {
    const child = spawn(which(cmd)!, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const err: string[] = [];
    child.stderr?.on('data', (d: Buffer) => err.push(d.toString()));
    daemons.push(child);
    return err;
  };
  // --force: munged refuses root and a key under a world-writable /tmp otherwise.
  daemon('munged', [
    '-F',
    '--force',
    `--key-file=${key}`,
    `--socket=${socket}`,
    `--pid-file=${munge}/munged.pid`,
    `--seed-file=${munge}/seed`,
    `--log-file=${munge}/munged.log`,
  ]);
  for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
  const ctldErr = daemon('slurmctld', ['-D', '-c', '-f', conf]);
  const dErr = daemon('slurmd', ['-D', '-f', conf]);

  const run = (cmd: string, args: string[]) => execFileSync(which(cmd)!, args, { env, encoding: 'utf8' });
  const logs = () =>
    ['slurmctld.log', 'slurmd.log']
      .map((f) => path.join(dir, f))
      .filter(existsSync)
      .map((f) => `${f}:\n${readFileSync(f, 'utf8').split('\n').slice(-15).join('\n')}`)
      .join('\n') +
    ctldErr.join('') +
    dErr.join('');
  const started = Date.now();
  for (;;) {
    const out = spawnSync(which('sinfo')!, ['-h', '-o', '%T'], { env, encoding: 'utf8' });
    if (out.status === 0 && /^idle/m.test(out.stdout)) break;
    if (Date.now() - started > 60_000) {
      await stopAll(daemons);
      throw new Error(
        `the one-node Slurm cluster did not come up in 60 s (sinfo: ${out.stdout}${out.stderr})\n${logs()}`,
      );
    }
    await sleep(250);
  }

  const state = (job: string) => {
    const out = spawnSync(which('squeue')!, ['-h', '-j', job, '-o', '%T'], { env, encoding: 'utf8' });
    return out.status === 0 ? out.stdout.trim() : '';
  };
  return {
    dir,
    env,
    run,
    state,
    async waitGone(jobs, timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (jobs.some((j) => state(j) !== '')) {
        if (Date.now() > until) {
          const queue = run('squeue', ['-o', '%i %T %r']);
          throw new Error(
            `jobs ${jobs.join(', ')} still queued after ${timeoutMs / 1000} s:\n${queue}\n${logs()}`,
          );
        }
        await sleep(500);
      }
    },
    async stop() {
      spawnSync(which('scancel')!, ['-u', user], { env });
      await sleep(500);
      spawnSync(which('scontrol')!, ['shutdown'], { env });
      await stopAll(daemons);
    },
  };
}

async function stopAll(daemons: ChildProcess[]): Promise<void> {
  for (const d of [...daemons].reverse()) {
    if (d.exitCode !== null || d.signalCode !== null) continue;
    const exited = new Promise((r) => d.once('exit', r));
    d.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
  }
}
