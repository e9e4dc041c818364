import { UserError } from './errors.js';

export const BACKENDS = ['auto', 'tensorflow', 'wasm', 'cpu', 'cuda'] as const;
export type BackendRequest = (typeof BACKENDS)[number];
export const SUBMIT_MODES = ['slurm', 'none'] as const;
export type SubmitMode = (typeof SUBMIT_MODES)[number];
export const PROGRESS_MODES = ['auto', 'tty', 'plain', 'none'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

/** Options of the runner itself, valid for every pipeline. */
export interface RunnerArgs {
  pipelineFile: string;
  help: boolean;
  configFile?: string;
  out?: string;
  resume?: string;
  backend: BackendRequest;
  /** Whether --backend was given (a resumed run otherwise keeps its original backend). */
  backendGiven: boolean;
  maxInFlight: number;
  progress: ProgressMode;
  logEverySeconds: number;
  /** With --out: resume the run there if it has one (a completed run is not rerun), else start it. */
  resumeExisting: boolean;
  /** Split the run into this many tasks and write (and with `submit` slurm, submit) their scripts. */
  array?: number;
  submit: SubmitMode;
  /** Lines of `#SBATCH` options for every task (resources, partition, time limit). */
  sbatch: string[];
  /** Lines of `#SBATCH` options for the finishing job. */
  finishSbatch: string[];
  /** Extra options of the finishing step's pipeline (e.g. eval options of gather-sweep). */
  finishArgs: string[];
  /** Pipeline option overrides, `dotted.key -> raw string`, in command-line order. */
  overrides: Array<[string, string]>;
}

export const RUNNER_FLAGS_HELP = `Runner options (every pipeline):
  --help                 print the pipeline's options and exit
  --config <file.json>   read option values from a JSON file (nested objects or dotted keys)
  --out <dir>            run directory (default: runs/<pipeline>-<timestamp>/)
  --resume <dir>         continue an interrupted run in <dir> with its saved config.json
  --backend <auto|tensorflow|wasm|cpu|cuda>   TensorFlow.js backend, or cuda: onnx engines on the GPU (default: auto)
  --max_in_flight <n>    batches a source may run ahead of the slowest stage (default: 4)
  --progress <auto|tty|plain|none>     live progress line, plain log lines, or nothing (default: auto)
  --log_every <seconds>  interval of plain progress lines and metrics.jsonl progress records (default: 10)
  --resume_existing      with --out: resume the run there if there is one (a completed one is not rerun)
  --array <n>            split the run into n tasks (--shard i/n) under --out and write their scripts (docs/cluster.md)
  --submit <slurm|none>  with --array: submit the tasks and the finishing step with sbatch (default), or only write the scripts
  --sbatch <options>     with --array: #SBATCH options for every task, e.g. "--time=4:00:00 --cpus-per-task=8" (repeatable)
  --finish_sbatch <options>  with --array: #SBATCH options for the finishing job (repeatable)
  --finish_args <options>    with --array: more options for the finishing step's pipeline (split at spaces)
Pipeline options: --key value, --key=value, --group.key value; booleans also as --key / --no-key.`;

const RUNNER_VALUE_FLAGS = new Set([
  'config',
  'out',
  'resume',
  'backend',
  'max_in_flight',
  'progress',
  'log_every',
  'array',
  'submit',
  'sbatch',
  'finish_sbatch',
  'finish_args',
]);

const DASHED_VALUE_FLAGS = new Set(['sbatch', 'finish_sbatch', 'finish_args']);

function normaliseRunnerFlag(name: string): string {
  // The runner's own flags are accepted with dashes too; pipeline options keep their exact names.
  const underscored = name.replace(/-/g, '_');
  return RUNNER_VALUE_FLAGS.has(underscored) ? underscored : name;
}

export function parseCliArgs(argv: readonly string[]): RunnerArgs {
  const args: RunnerArgs = {
    pipelineFile: '',
    help: false,
    backend: 'auto',
    backendGiven: false,
    maxInFlight: 4,
    progress: 'auto',
    logEverySeconds: 10,
    resumeExisting: false,
    submit: 'slurm',
    sbatch: [],
    finishSbatch: [],
    finishArgs: [],
    overrides: [],
  };
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i] as string;
    if (token === '--help' || token === '-h') {
      args.help = true;
      continue;
    }
    if (token === '--resume_existing' || token === '--resume-existing') {
      args.resumeExisting = true;
      continue;
    }
    if (!token.startsWith('--')) {
      positional.push(token);
      continue;
    }
    let name = token.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (name === '') throw new UserError(`Malformed option "${token}".`);
    const runnerName = normaliseRunnerFlag(name);
    if (RUNNER_VALUE_FLAGS.has(runnerName)) {
      if (value === undefined) {
        const next = argv[i + 1];
        // Options passed on to sbatch or another pipeline start with dashes themselves.
        if (next === undefined || (next.startsWith('--') && !DASHED_VALUE_FLAGS.has(runnerName)))
          throw new UserError(`Option --${name} needs a value.`);
        value = next;
        i++;
      }
      setRunnerFlag(args, runnerName, value);
      continue;
    }
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) {
        // A bare flag is a boolean; --no-x sets x to false.
        if (name.startsWith('no-')) args.overrides.push([name.slice(3), 'false']);
        else args.overrides.push([name, 'true']);
        continue;
      }
      value = next;
      i++;
    }
    args.overrides.push([name, value]);
  }
  if (positional.length === 0) {
    if (args.help) return args;
    throw new UserError('Usage: run-pipeline <pipeline-file.ts> [--help] [--key value ...]');
  }
  if (positional.length > 1) {
    throw new UserError(
      `Expected one pipeline file, got ${positional.length}: ${positional.join(' ')}. Options take the form --key value.`,
    );
  }
  args.pipelineFile = positional[0] as string;
  return args;
}

function setRunnerFlag(args: RunnerArgs, name: string, value: string): void {
  switch (name) {
    case 'config':
      args.configFile = value;
      return;
    case 'out':
      args.out = value;
      return;
    case 'resume':
      args.resume = value;
      return;
    case 'backend':
      if (!(BACKENDS as readonly string[]).includes(value)) {
        throw new UserError(`Option --backend: expected one of ${BACKENDS.join('|')}, got "${value}".`);
      }
      args.backend = value as BackendRequest;
      args.backendGiven = true;
      return;
    case 'progress':
      if (!(PROGRESS_MODES as readonly string[]).includes(value)) {
        throw new UserError(
          `Option --progress: expected one of ${PROGRESS_MODES.join('|')}, got "${value}".`,
        );
      }
      args.progress = value as ProgressMode;
      return;
    case 'max_in_flight': {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) {
        throw new UserError(`Option --max_in_flight: expected an integer >= 1, got "${value}".`);
      }
      args.maxInFlight = n;
      return;
    }
    case 'array': {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 99_999) {
        throw new UserError(`Option --array: expected a task count from 1 to 99999, got "${value}".`);
      }
      args.array = n;
      return;
    }
    case 'submit':
      if (!(SUBMIT_MODES as readonly string[]).includes(value)) {
        throw new UserError(`Option --submit: expected one of ${SUBMIT_MODES.join('|')}, got "${value}".`);
      }
      args.submit = value as SubmitMode;
      return;
    case 'sbatch':
      args.sbatch.push(value);
      return;
    case 'finish_sbatch':
      args.finishSbatch.push(value);
      return;
    case 'finish_args':
      args.finishArgs.push(...value.split(/\s+/).filter((w) => w !== ''));
      return;
    case 'log_every': {
      const s = Number(value);
      if (!Number.isFinite(s) || s <= 0) {
        throw new UserError(`Option --log_every: expected a number of seconds > 0, got "${value}".`);
      }
      args.logEverySeconds = s;
      return;
    }
  }
}
