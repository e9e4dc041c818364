import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { lastValueFrom, type Observable } from 'rxjs';
import { writeFileAtomicSync } from '../util/atomic-write.js';
import { selectBackend } from './backend.js';
import { RUNNER_FLAGS_HELP, type BackendRequest, type RunnerArgs } from './cli-args.js';
import { isPipelineDefinition, type PipelineDefinition, type RunContext } from './define-pipeline.js';
import { isUserError, UserError } from './errors.js';
import { Flow } from './flow.js';
import { Logger } from './logger.js';
import { MetricsWriter } from './metrics.js';
import { translateForeignNames } from './foreign-names.js';
import type { ConfigOf, ConfigSchema } from './options.js';
import { Progress, type ProgressDisplay } from './progress.js';
import {
  applyCliOverrides,
  applyJsonConfig,
  defaultsOf,
  flattenSchema,
  formatOptionsHelp,
} from './resolve-config.js';
import { createRunDir, removeFailedRun, runDirError, type CreatedRunDir } from './run-dir.js';
import { RunState } from './run-state.js';
import { runStatus } from '../cluster/parts.js';
import { submitArray, writeArrayScripts } from '../cluster/slurm.js';

export type RunStatus = 'completed' | 'interrupted' | 'failed';

export interface RunOutcome {
  status: RunStatus;
  runDir: string;
  result: unknown;
  /** The signal that interrupted the run, if one did. */
  signal?: StopSignal;
}

/** SIGTERM is what `timeout`, Kubernetes and Slurm send before they kill: it stops a run like Ctrl-C. */
export type StopSignal = 'SIGINT' | 'SIGTERM';
const STOP_SIGNALS: readonly StopSignal[] = ['SIGINT', 'SIGTERM'];

/** The exit code of a process ended by a signal, as shells report it (128 + the signal's number). */
export function signalExitCode(signal: StopSignal): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

export interface RunnerIo {
  stdout: (text: string) => void;
  /** Where SIGINT and SIGTERM handlers are installed; tests pass a stub to simulate them. */
  signals: Pick<NodeJS.Process, 'on' | 'off'>;
  isTTY: boolean;
  cwd: string;
}

export async function loadPipeline(file: string, cwd: string): Promise<PipelineDefinition<ConfigSchema>> {
  const abs = path.resolve(cwd, file);
  if (!existsSync(abs)) throw new UserError(`Pipeline file not found: ${file}`);
  const mod = (await import(pathToFileURL(abs).href)) as { default?: unknown };
  if (!isPipelineDefinition(mod.default)) {
    throw new UserError(
      `${file} does not default-export definePipeline({ name, description, config, build }).`,
    );
  }
  return mod.default;
}

export function pipelineHelp(pipeline: PipelineDefinition<ConfigSchema>, file: string): string {
  return [
    `${pipeline.name}: ${pipeline.description}`,
    '',
    `Usage: npx run-pipeline ${file} [options]`,
    '',
    'Pipeline options:',
    formatOptionsHelp(pipeline.config),
    '',
    ...foreignNamesHelp(pipeline),
    RUNNER_FLAGS_HELP,
    '',
  ].join('\n');
}

/** One paragraph on the other tool's names the pipeline reads, when it reads any. */
function foreignNamesHelp(pipeline: PipelineDefinition<ConfigSchema>): string[] {
  const entries = Object.entries(pipeline.foreignNames ?? {});
  if (entries.length === 0) return [];
  const tools = [...new Set(entries.map(([, e]) => e.tool).filter((t) => t !== undefined))];
  const renamed = entries.flatMap(([name, e]) => ('to' in e ? [`--${name} = --${e.to}`] : []));
  return [
    `Also read, on the command line and in --config files: ${tools.join(', ') || 'other'} names (${renamed.join(', ')});`,
    'the ones without effect here are noted in the run log, and the ones asking for what saeflow lacks are refused with its equivalent.',
    '',
  ];
}

function readJsonFile(file: string, what: string): unknown {
  if (!existsSync(file)) throw new UserError(`${what} not found: ${file}`);
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message}).`);
  }
}

function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

function resolveRunDir(args: RunnerArgs, name: string, cwd: string): string {
  if (args.resume) {
    const dir = path.resolve(cwd, args.resume);
    if (!existsSync(path.join(dir, 'config.json'))) {
      throw new UserError(`--resume ${args.resume}: no config.json there; it is not a run directory.`);
    }
    if (args.out && path.resolve(cwd, args.out) !== dir) {
      throw new UserError(
        '--resume and --out name different directories; --resume continues the run in place.',
      );
    }
    return dir;
  }
  const dir = path.resolve(cwd, args.out ?? path.join('runs', `${name}-${timestamp()}`));
  if (existsSync(path.join(dir, 'config.json'))) {
    throw new UserError(
      `${dir} already holds a run. Continue it with --resume ${args.out ?? dir}, or choose another --out.`,
    );
  }
  return dir;
}

/**
 * A resumed run uses the backend of the run it continues unless told otherwise: kernels of different
 * backends round differently, and a resumed run should give the results of an uninterrupted one.
 */
function resumedBackend(args: RunnerArgs, runDir: string): BackendRequest {
  if (args.backendGiven) return args.backend;
  try {
    const info = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')) as {
      backend?: { name?: string };
    };
    const name = info.backend?.name;
    if (name === 'wasm' || name === 'cpu' || name === 'tensorflow' || name === 'cuda') return name;
  } catch {
    // No readable run.json: fall back to the requested backend.
  }
  return args.backend;
}

/**
 * `--resume_existing --out DIR`: what a requeued or resubmitted job runs. DIR without a run starts one; a
 * stopped or failed run there is resumed; a completed one is left alone.
 */
function continueExisting(args: RunnerArgs, cwd: string): RunnerArgs & { completed?: boolean } {
  if (args.resume !== undefined || args.out === undefined) {
    throw new UserError('--resume_existing goes with --out DIR (the run to start there, or to continue)');
  }
  const dir = path.resolve(cwd, args.out);
  if (!existsSync(path.join(dir, 'config.json'))) return args;
  return { ...args, resume: args.out, completed: runStatus(dir) === 'completed' };
}

/**
 * `--array N`: instead of running, writes the scripts of N tasks (`--shard i/N`, each into its part of --out)
 * and of the pipeline's finishing step, and with `--submit slurm` submits them (docs/cluster.md).
 */
function submitSplitRun(
  pipeline: PipelineDefinition<ConfigSchema>,
  args: RunnerArgs,
  io: RunnerIo,
  cfg: ConfigOf<ConfigSchema>,
): void {
  const count = args.array as number;
  const values = cfg as Record<string, unknown>;
  if (!pipeline.split || !('shard' in values)) {
    throw new UserError(
      `--array: ${args.pipelineFile} does not split into tasks (see docs/cluster.md for the ones that do)`,
    );
  }
  if (values.shard !== null)
    throw new UserError('--array and --shard: give one of them (--array submits every --shard i/n)');
  if (args.resume !== undefined || args.resumeExisting) {
    throw new UserError('--array: resubmit a split run with bash <dir>/slurm/submit.sh, not --resume');
  }
  if (args.out === undefined)
    throw new UserError('--array: give --out, a directory every task can reach (a shared file system)');
  const dir = path.resolve(io.cwd, args.out);
  if (existsSync(path.join(dir, 'config.json'))) {
    throw new UserError(`--array: ${dir} already holds a single run; choose another --out`);
  }
  const finish = pipeline.split.finish(dir, cfg, count);
  const written = writeArrayScripts({
    dir,
    count,
    pipelineName: pipeline.name,
    pipelineFile: path.resolve(io.cwd, args.pipelineFile),
    config: cfg,
    cwd: io.cwd,
    finish,
    args,
  });
  const scripts = { task: written.taskScript, finish: written.finishScript, submit: written.submitScript };
  if (args.submit === 'none') {
    io.stdout(
      `${JSON.stringify({ dir, tasks: count, scripts, submit: `bash ${written.submitScript}`, by_hand: `bash ${written.taskScript} I (I = 0 to ${count - 1}), then bash ${written.finishScript}` }, null, 2)}\n`,
    );
    return;
  }
  const jobs = submitArray(written);
  io.stdout(
    `${JSON.stringify({ dir, tasks: count, array_job: jobs.arrayJob, finish_job: jobs.finishJob, logs: written.logs, scripts }, null, 2)}\n`,
  );
}

/** Runs one pipeline file with parsed command-line arguments. Throws UserError for bad input. */
export async function runPipeline(parsedArgs: RunnerArgs, io: RunnerIo): Promise<RunOutcome | null> {
  let args: RunnerArgs & { completed?: boolean } = parsedArgs;
  const pipeline = await loadPipeline(args.pipelineFile, io.cwd);
  if (args.help) {
    io.stdout(pipelineHelp(pipeline, args.pipelineFile));
    return null;
  }

  if (args.resumeExisting) args = continueExisting(args, io.cwd);
  if (args.resume && args.completed) {
    const dir = path.resolve(io.cwd, args.resume);
    const saved = path.join(dir, 'result.json');
    const result: unknown = existsSync(saved) ? JSON.parse(readFileSync(saved, 'utf8')) : undefined;
    io.stdout(`${dir}: this run has completed; nothing to do\n`);
    return { status: 'completed', runDir: dir, result };
  }
  // Checked before the config, so that --resume of a directory without a run says so.
  const runDir = resolveRunDir(args, pipeline.name, io.cwd);
  let cfg = defaultsOf(pipeline.config);
  if (args.resume) {
    const saved = path.join(path.resolve(io.cwd, args.resume), 'config.json');
    cfg = applyJsonConfig(pipeline.config, cfg, readJsonFile(saved, 'Saved config'), saved);
  }
  const foreign = pipeline.foreignNames ?? {};
  const ownNames = new Set(
    flattenSchema(pipeline.config).flatMap(([key]) =>
      key.split('.').map((_, i, parts) => parts.slice(0, i + 1).join('.')),
    ),
  );
  const notes: string[] = [];
  if (args.configFile) {
    let json = readJsonFile(args.configFile, 'Config file');
    if (typeof json === 'object' && json !== null && !Array.isArray(json)) {
      const t = translateForeignNames(Object.entries(json), foreign, ownNames, args.configFile, false);
      json = Object.fromEntries(t.values);
      notes.push(...t.notes);
    }
    cfg = applyJsonConfig(pipeline.config, cfg, json, args.configFile);
  }
  const cli = translateForeignNames(args.overrides, foreign, ownNames, 'command line', true);
  notes.push(...cli.notes);
  cfg = applyCliOverrides(
    pipeline.config,
    cfg,
    cli.values.map(([k, v]) => [k, String(v)] as const),
    pipeline.name,
  );

  if (args.array !== undefined) {
    submitSplitRun(pipeline, args, io, cfg);
    return null;
  }
  const outSpec = args.resume ?? args.out ?? runDir;
  const created: CreatedRunDir = args.resume
    ? { dir: runDir, createdDirs: [] }
    : createRunDir(runDir, outSpec);
  try {
    writeFileAtomicSync(path.join(runDir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
  } catch (err) {
    if (!args.resume) removeFailedRun(created);
    throw runDirError(outSpec, runDir, err);
  }
  try {
    return await runInDir(pipeline, args, io, runDir, cfg, notes);
  } catch (err) {
    // A run that failed on bad input before writing any output leaves nothing behind, so the same
    // command line works once the input is fixed. Internal errors keep the directory for run.log.
    if (isUserError(err) && !args.resume) removeFailedRun(created);
    throw err;
  }
}

async function runInDir(
  pipeline: PipelineDefinition<ConfigSchema>,
  args: RunnerArgs,
  io: RunnerIo,
  runDir: string,
  cfg: ConfigOf<ConfigSchema>,
  /** What translating foreign option names (SAELens's) has to say, for the run log. */
  notes: readonly string[],
): Promise<RunOutcome> {
  const log = new Logger(pipeline.name, path.join(runDir, 'run.log'));
  const metrics = new MetricsWriter(path.join(runDir, 'metrics.jsonl'));
  const display: ProgressDisplay = args.progress === 'auto' ? (io.isTTY ? 'tty' : 'plain') : args.progress;
  const progress = new Progress({
    name: pipeline.name,
    display,
    logger: log,
    metrics,
    logEverySeconds: args.logEverySeconds,
  });
  const flow = new Flow(args.maxInFlight);

  const backend = await selectBackend(args.resume ? resumedBackend(args, runDir) : args.backend);
  log.info(`${args.resume ? 'resuming' : 'run'} directory: ${runDir}`);
  for (const note of notes) log.info(note);
  // A run that computes on onnxruntime (--engine onnx) does its work there: naming the TensorFlow.js backend
  // would suggest the run is on wasm.
  if (pipeline.usesTensorflowJs?.(cfg) ?? true) {
    log.info(
      `compute backend: ${backend.name} (${backend.package}, ${backend.threads} thread${backend.threads === 1 ? '' : 's'}; ${backend.reason})`,
    );
  } else {
    log.info(`compute engine: onnxruntime-node on ${backend.name === 'cuda' ? 'CUDA' : 'the CPU'}`);
  }
  const runInfo = {
    pipeline: pipeline.name,
    file: args.pipelineFile,
    argv: process.argv.slice(2),
    started: new Date().toISOString(),
    resumed: Boolean(args.resume),
    node: process.version,
    backend,
    max_in_flight: args.maxInFlight,
    status: 'running' as RunStatus | 'running',
  };
  const writeRunInfo = () =>
    writeFileAtomicSync(path.join(runDir, 'run.json'), `${JSON.stringify(runInfo, null, 2)}\n`);
  writeRunInfo();
  metrics.write('start', {
    pipeline: pipeline.name,
    resumed: runInfo.resumed,
    backend: backend.name,
    threads: backend.threads,
  });

  let interrupts = 0;
  let stopSignal: StopSignal | undefined;
  const handlers = STOP_SIGNALS.map((signal) => {
    const handler = () => {
      interrupts++;
      if (interrupts === 1) {
        stopSignal = signal;
        const what = signal === 'SIGINT' ? 'Ctrl-C' : signal;
        log.warn(
          `${what}: stopping after the work in flight and flushing outputs (Ctrl-C or ${signal} again to abort at once).`,
        );
        flow.stop();
      } else {
        log.warn('aborted; outputs of the work in flight may be incomplete (completed files are intact).');
        process.exit(signalExitCode(signal));
      }
    };
    io.signals.on(signal, handler);
    return { signal, handler };
  });

  const ctx: RunContext = {
    pipelineName: pipeline.name,
    runDir,
    resume: Boolean(args.resume),
    flow,
    log,
    metrics,
    progress,
    backend,
    state: new RunState(path.join(runDir, 'state.json')),
  };

  let status: RunStatus = 'failed';
  let result: unknown;
  progress.start();
  try {
    const observable: Observable<unknown> = await pipeline.build(cfg, ctx);
    result = await lastValueFrom(observable, { defaultValue: undefined });
    status = flow.stopped ? 'interrupted' : 'completed';
  } finally {
    for (const { signal, handler } of handlers) io.signals.off(signal, handler);
    progress.finish(status);
    runInfo.status = status;
    Object.assign(runInfo, { ended: new Date().toISOString() });
    writeRunInfo();
    metrics.write('end', { status });
  }

  if (result !== undefined && typeof result === 'object' && result !== null) {
    writeFileAtomicSync(path.join(runDir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
    io.stdout(`${JSON.stringify(result, null, 2)}\n`);
  }
  if (status === 'interrupted') {
    log.warn(
      `interrupted; what was written is intact. Resume with: npx run-pipeline ${args.pipelineFile} --resume ${path.relative(io.cwd, runDir) || '.'}`,
    );
  } else {
    log.info(`done; outputs in ${runDir}`);
  }
  return {
    status,
    runDir,
    result,
    ...(status === 'interrupted' && stopSignal ? { signal: stopSignal } : {}),
  };
}
