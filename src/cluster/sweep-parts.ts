import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../pipeline/errors.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';
import { findParts, readPartFile, resumeCommand, runStatus } from './parts.js';
import { PART_FILE, type ShardSpec, parseShard } from './shard-spec.js';

/** The task's share of a sweep of `sweepSize` SAEs, or null for an unsplit run; refuses tasks left without an SAE. */
export function sweepShare(shard: string | null, sweepSize: number): ShardSpec | null {
  if (shard === null) return null;
  const spec = parseShard(shard);
  checkSweepSplit(spec.count, sweepSize, `--shard ${shard}`);
  return spec;
}

export function checkSweepSplit(count: number, sweepSize: number, what: string): void {
  if (count > sweepSize) {
    throw new UserError(
      `${what}: the sweep has ${sweepSize} SAE${sweepSize === 1 ? '' : 's'} (--saes), so ${count} tasks would leave some without one`,
    );
  }
}

/** part.json of one task of a split sweep: the whole sweep's SAE names and the ones this task trains. */
export interface SweepPartFile extends ShardSpec {
  readonly kind: 'sweep-part';
  readonly saes: readonly string[];
  readonly assigned: readonly string[];
}

export function writeSweepPart(
  dir: string,
  spec: ShardSpec,
  saes: readonly string[],
  assigned: readonly string[],
): void {
  const json: SweepPartFile = { kind: 'sweep-part', ...spec, saes, assigned };
  writeFileAtomicSync(path.join(dir, PART_FILE), `${JSON.stringify(json, null, 2)}\n`);
}

export interface GatheredSweep {
  /** Every SAE of the sweep in sweep order, with the folder its task saved it in. */
  readonly saes: ReadonlyArray<{ name: string; folder: string; part: number }>;
  readonly parts: number;
}

/**
 * Checks the parts of a split sweep in `dir`: every task finished, all of them trained the same sweep, the
 * tasks' shares cover it exactly, and every SAE was saved. Returns the SAE folders in sweep order.
 */
export function gatherSweep(dir: string, pipelineFile: string): GatheredSweep {
  const parts = findParts(dir, 'training');
  const files = parts.map((p) => readPartFile<SweepPartFile>(p, pipelineFile));
  const names = files[0]!.saes;
  const owner = new Map<string, number>();
  parts.forEach((part, i) => {
    const f = files[i]!;
    if (JSON.stringify(f.saes) !== JSON.stringify(names)) {
      throw new UserError(
        `parts 0 and ${i} of ${parts.length} trained different sweeps (${names.join(', ')} against ${f.saes.join(', ')}); give every task the same --saes`,
      );
    }
    const status = runStatus(part.dir);
    if (status !== 'completed') {
      throw new UserError(
        `part ${i} of ${parts.length} has not finished (its run.json says ${status ?? 'nothing'}); finish it with: ${resumeCommand(part.dir, pipelineFile)}`,
      );
    }
    for (const name of f.assigned) {
      if (owner.has(name)) {
        throw new UserError(
          `SAE ${name} was trained by parts ${owner.get(name)} and ${i}; each SAE belongs to one task`,
        );
      }
      owner.set(name, i);
    }
  });
  const saes = names.map((name) => {
    const part = owner.get(name);
    if (part === undefined)
      throw new UserError(
        `SAE ${name} of the sweep was trained by no part (a task ran with other --shard settings?)`,
      );
    const folder = path.join(parts[part]!.dir, 'saes', name);
    if (!existsSync(folder) || readdirSync(folder).length === 0) {
      throw new UserError(
        `${folder}: missing; part ${part} of ${parts.length} finished without saving SAE ${name}`,
      );
    }
    return { name, folder, part };
  });
  return { saes, parts: parts.length };
}
