import { existsSync, readFileSync } from 'node:fs';
import { UserError } from './errors.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';

/**
 * A small JSON document in the run directory (`state.json`) where stages record how far they got, so a
 * resumed run can continue. Each `set` rewrites the file atomically: a crash leaves the previous state.
 */
export class RunState {
  private values: Record<string, unknown>;

  constructor(readonly path: string) {
    this.values = {};
    if (existsSync(path)) {
      try {
        this.values = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
      } catch (e) {
        throw new UserError(`${path}: run state is not valid JSON (${(e as Error).message}).`);
      }
    }
  }

  get<T>(key: string): T | undefined {
    return this.values[key] as T | undefined;
  }

  set(key: string, value: unknown): void {
    this.values[key] = value;
    writeFileAtomicSync(this.path, `${JSON.stringify(this.values, null, 2)}\n`);
  }
}
