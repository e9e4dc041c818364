import type { Observable } from 'rxjs';
import type { BackendInfo } from './backend.js';
import type { Flow } from './flow.js';
import type { ForeignNames } from './foreign-names.js';
import type { Logger } from './logger.js';
import type { MetricsWriter } from './metrics.js';
import type { ConfigOf, ConfigSchema } from './options.js';
import type { Progress } from './progress.js';
import type { RunState } from './run-state.js';

/** What a pipeline's `build` gets besides its config: the run's directory and shared services. */
export interface RunContext {
  readonly pipelineName: string;
  /** The run directory: config.json, metrics.jsonl, run.log and every output live here. */
  readonly runDir: string;
  /** True when continuing an interrupted run (`--resume DIR`). */
  readonly resume: boolean;
  /** Backpressure and the stop signal: pass it to sources and asynchronous stages. */
  readonly flow: Flow;
  readonly log: Logger;
  readonly metrics: MetricsWriter;
  readonly progress: Progress;
  readonly backend: BackendInfo;
  /** Small JSON state that survives interruption (e.g. how far a source got), for `--resume`. */
  readonly state: RunState;
}

export interface PipelineDefinition<S extends ConfigSchema> {
  /** Short name: used in run directory names and log prefixes. */
  readonly name: string;
  readonly description: string;
  readonly config: S;
  /** Another tool's names for these options (SAELens's runner config), read on the command line and in files. */
  readonly foreignNames?: ForeignNames;
  /**
   * How a run splits into tasks (its `shard` option, `i/n`) whose parts a finishing step joins: what
   * `--array N` submits (docs/cluster.md). `finish` names that step for the parts under `dir` and may refuse
   * a split that cannot work (more tasks than SAEs in a sweep) with a UserError.
   */
  readonly split?: {
    finish(dir: string, cfg: ConfigOf<S>, count: number): { pipeline: string; args: string[] };
  };
  /** Whether a run with this config computes on TensorFlow.js (absent: yes), rather than on onnxruntime. */
  usesTensorflowJs?(cfg: ConfigOf<S>): boolean;
  /**
   * Wires stages together. The returned observable is subscribed once; its last value, when it is an
   * object, is the run's result (written to result.json and printed).
   */
  build(cfg: ConfigOf<S>, ctx: RunContext): Observable<unknown> | Promise<Observable<unknown>>;
}

export function definePipeline<const S extends ConfigSchema>(
  definition: PipelineDefinition<S>,
): PipelineDefinition<S> {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(definition.name)) {
    throw new Error(`Pipeline name "${definition.name}" must be lowercase letters, digits and dashes.`);
  }
  return definition;
}

export function isPipelineDefinition(x: unknown): x is PipelineDefinition<ConfigSchema> {
  const d = x as Partial<PipelineDefinition<ConfigSchema>> | null;
  return (
    typeof d === 'object' &&
    d !== null &&
    typeof d.name === 'string' &&
    typeof d.build === 'function' &&
    typeof d.config === 'object'
  );
}
