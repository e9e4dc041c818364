import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../pipeline/errors.js';
import type { RunnerArgs } from '../pipeline/cli-args.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';

/** Everything the scripts of one split run need. */
export interface ArrayPlan {
  /** The array's directory on the shared file system (absolute): parts/, slurm/, and the finished output. */
  readonly dir: string;
  readonly count: number;
  readonly pipelineName: string;
  /** The pipeline file, absolute. */
  readonly pipelineFile: string;
  /** The fully resolved config every task starts from. */
  readonly config: unknown;
  /** Where the tasks run (the directory `run-pipeline` was called from). */
  readonly cwd: string;
  readonly finish: { pipeline: string; args: readonly string[] };
  readonly args: RunnerArgs;
}

export interface WrittenArray {
  readonly slurmDir: string;
  readonly taskScript: string;
  readonly finishScript: string;
  readonly submitScript: string;
  readonly logs: string;
}

const RUN_PIPELINE = fileURLToPath(new URL('../../bin/run-pipeline.js', import.meta.url));
const SAEFLOW_ROOT = path.dirname(path.dirname(RUN_PIPELINE));

/** A word for bash, single-quoted unless it is plainly safe. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Runner flags the tasks inherit: the ones that change how, not what, they compute. */
function runnerFlags(args: RunnerArgs): string[] {
  return [
    ...(args.backendGiven ? ['--backend', args.backend] : []),
    '--max_in_flight',
    String(args.maxInFlight),
    '--log_every',
    String(args.logEverySeconds),
    '--progress',
    'plain',
  ];
}

function sbatchLines(lines: readonly string[]): string[] {
  return lines.map((l) => {
    if (/[\n\r]/.test(l))
      throw new UserError(`--sbatch ${JSON.stringify(l)}: one line of sbatch options, please`);
    return `#SBATCH ${l}`;
  });
}

/**
 * Writes `<dir>/slurm/`: config.json (the resolved options every task starts from), task.sh (the array: task
 * i runs `--shard i/n` into parts/, resuming its part when Slurm requeues it or the array is resubmitted),
 * finish.sh (the finishing step) and submit.sh (submits both, the finishing job after every task succeeded).
 * A directory that already holds an array with other options is refused: its parts would mix two runs.
 */
export function writeArrayScripts(plan: ArrayPlan): WrittenArray {
  const slurmDir = path.join(plan.dir, 'slurm');
  const logs = path.join(slurmDir, 'logs');
  const configFile = path.join(slurmDir, 'config.json');
  const configText = `${JSON.stringify(plan.config, null, 2)}\n`;
  if (existsSync(configFile)) {
    const before = readFileSync(configFile, 'utf8');
    const countFile = path.join(slurmDir, 'count');
    const beforeCount = existsSync(countFile) ? readFileSync(countFile, 'utf8').trim() : '';
    if (before !== configText || beforeCount !== String(plan.count)) {
      throw new UserError(
        `${plan.dir}: already holds a split run with other options (${configFile}); resubmit that one with bash ${path.join(slurmDir, 'submit.sh')}, or choose another --out`,
      );
    }
  }
  mkdirSync(logs, { recursive: true });
  writeFileAtomicSync(configFile, configText);
  writeFileAtomicSync(path.join(slurmDir, 'count'), `${plan.count}\n`);

  const q = shellQuote;
  const node = q(process.execPath);
  const bin = q(RUN_PIPELINE);
  const n = plan.count;
  const part = `${plan.dir}/parts/$(printf '%05d-of-%05d' "$i" ${n})`;
  const header = (comment: string) => [
    '#!/bin/bash',
    `# ${comment}`,
    `# Written by saeflow (${SAEFLOW_ROOT}) for: npx run-pipeline ${path.relative(plan.cwd, plan.pipelineFile)} --array ${n} --out ${plan.dir}`,
  ];
  const task = [
    '#!/bin/bash',
    `#SBATCH --job-name=saeflow-${plan.pipelineName}`,
    `#SBATCH --array=0-${n - 1}`,
    `#SBATCH --output=${logs}/task-%a.log`,
    '#SBATCH --open-mode=append',
    // Preempted or `scontrol requeue`d tasks run again; the run handles the SIGTERM before and resumes after.
    '#SBATCH --requeue',
    ...sbatchLines(plan.args.sbatch),
    ...header(`Task i of ${n} (Slurm's SLURM_ARRAY_TASK_ID, or the first argument when run by hand).`).slice(
      1,
    ),
    'set -euo pipefail',
    `i="\${SLURM_ARRAY_TASK_ID:-\${1:?usage: task.sh INDEX, 0 to ${n - 1}}}"`,
    `cd ${q(plan.cwd)}`,
    // exec: the run itself is the job's process, so Slurm's SIGTERM reaches it and it checkpoints.
    `exec ${node} ${bin} ${q(plan.pipelineFile)} --config ${q(configFile)} --shard "$i/${n}" --out "${part}" --resume_existing ${runnerFlags(plan.args).map(q).join(' ')}`,
    '',
  ].join('\n');
  const finish = [
    '#!/bin/bash',
    `#SBATCH --job-name=saeflow-${plan.pipelineName}-finish`,
    `#SBATCH --output=${logs}/finish.log`,
    '#SBATCH --open-mode=append',
    ...sbatchLines(plan.args.finishSbatch),
    ...header('The finishing step: checks every part and joins them.').slice(1),
    'set -euo pipefail',
    `cd ${q(plan.cwd)}`,
    `exec ${node} ${bin} ${q(path.resolve(SAEFLOW_ROOT, plan.finish.pipeline))} ${[...plan.finish.args, ...plan.args.finishArgs].map(q).join(' ')} --out ${q(path.join(plan.dir, 'finish'))} --resume_existing ${runnerFlags(plan.args).map(q).join(' ')}`,
    '',
  ].join('\n');
  const taskScript = path.join(slurmDir, 'task.sh');
  const finishScript = path.join(slurmDir, 'finish.sh');
  const submitScript = path.join(slurmDir, 'submit.sh');
  const submit = [
    ...header(
      'Submits the array and, after every task succeeded, the finishing step. Safe to run again: finished tasks return at once, stopped ones resume.',
    ),
    'set -euo pipefail',
    `array=$(sbatch --parsable ${q(taskScript)})`,
    'array="${array%%;*}"',
    `finish=$(sbatch --parsable --dependency="afterok:$array" ${q(finishScript)})`,
    'finish="${finish%%;*}"',
    `echo "{\\"array_job\\": \\"$array\\", \\"finish_job\\": \\"$finish\\", \\"tasks\\": ${n}, \\"logs\\": \\"${logs}\\"}"`,
    '',
  ].join('\n');
  writeFileAtomicSync(taskScript, task);
  writeFileAtomicSync(finishScript, finish);
  writeFileAtomicSync(submitScript, submit);
  return { slurmDir, taskScript, finishScript, submitScript, logs };
}

/** Runs submit.sh; returns the job ids it printed. sbatch missing or failing is a UserError with its message. */
export function submitArray(written: WrittenArray): { arrayJob: string; finishJob: string } {
  const run = spawnSync(existsSync('/bin/bash') ? '/bin/bash' : 'bash', [written.submitScript], {
    encoding: 'utf8',
  });
  if (run.error) throw run.error;
  if (run.status !== 0) {
    const said = (run.stderr || run.stdout).trim().split('\n').pop() ?? '';
    const missing = /sbatch: (command )?not found/.test(run.stderr);
    throw new UserError(
      missing
        ? `--submit slurm: sbatch is not installed here; submit ${written.submitScript} from a Slurm login node, or run the tasks by hand (docs/cluster.md)`
        : `--submit slurm: sbatch failed (${said}); the scripts are in ${written.slurmDir}`,
    );
  }
  const ids = JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}') as {
    array_job?: string;
    finish_job?: string;
  };
  return { arrayJob: ids.array_job ?? '', finishJob: ids.finish_job ?? '' };
}
