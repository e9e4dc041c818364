import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../pipeline/errors.js';
import { PART_DIR_PATTERN, PART_FILE, type ShardSpec, partDirName } from './shard-spec.js';

/** One task's directory of a split run, found under `<dir>/parts/`. */
export interface PartDir extends ShardSpec {
  readonly dir: string;
}

function runInfo(dir: string): { status?: unknown; file?: unknown } {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8')) as {
      status?: unknown;
      file?: unknown;
    };
  } catch {
    return {};
  }
}

/** The run status run.json records, or null when there is none (the task never started). */
export function runStatus(dir: string): string | null {
  const { status } = runInfo(dir);
  return typeof status === 'string' ? status : null;
}

/** The command that continues the part's run: its own pipeline file, as run.json records it. */
export function resumeCommand(dir: string, fallbackPipeline: string): string {
  const { file } = runInfo(dir);
  return `npx run-pipeline ${typeof file === 'string' ? file : fallbackPipeline} --resume ${dir}`;
}

/**
 * Every part of the split run in `dir`, 0 to n-1: all part directories must name the same n and none may be
 * missing. Errors name the part and say what to do.
 */
export function findParts(dir: string, what: string): PartDir[] {
  const partsDir = path.join(dir, 'parts');
  if (!existsSync(partsDir) || !statSync(partsDir).isDirectory()) {
    throw new UserError(
      `${dir}: no parts/ directory; expected the output of a split ${what} run (parts/00000-of-0000N/, ...)`,
    );
  }
  const found = readdirSync(partsDir)
    .map((name) => ({ name, m: PART_DIR_PATTERN.exec(name) }))
    .filter((x) => x.m !== null)
    .map((x) => ({ name: x.name, index: Number(x.m![1]), count: Number(x.m![2]) }));
  if (found.length === 0) throw new UserError(`${partsDir}: holds no part directories (00000-of-0000N)`);
  const counts = [...new Set(found.map((p) => p.count))].sort((a, b) => a - b);
  if (counts.length > 1) {
    throw new UserError(
      `${partsDir}: parts of runs split ${counts.join(' and ')} ways are mixed; keep one split per directory`,
    );
  }
  const count = counts[0]!;
  const parts: PartDir[] = [];
  for (let index = 0; index < count; index++) {
    const partDir = path.join(dir, partDirName({ index, count }));
    if (!found.some((p) => p.index === index)) {
      throw new UserError(
        `part ${index} of ${count} is missing: ${partDir} does not exist (task ${index} never ran, or wrote elsewhere)`,
      );
    }
    parts.push({ index, count, dir: partDir });
  }
  return parts;
}

/** The part's part.json, or a UserError saying the task has not finished and how to finish it. */
export function readPartFile<T extends ShardSpec>(part: PartDir, pipelineFile: string): T {
  const file = path.join(part.dir, PART_FILE);
  if (!existsSync(file)) {
    const status = runStatus(part.dir);
    const said = status === null ? 'it has no run.json' : `its run.json says ${status}`;
    throw new UserError(
      `part ${part.index} of ${part.count} has not finished (${said}); finish it with: ${resumeCommand(part.dir, pipelineFile)}`,
    );
  }
  let json: T;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (json.index !== part.index || json.count !== part.count) {
    throw new UserError(
      `${file}: says task ${String(json.index)} of ${String(json.count)}, but lies in the directory of task ${part.index} of ${part.count}`,
    );
  }
  return json;
}
