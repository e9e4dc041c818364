import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The version in saeflow's package.json, recorded in cache manifests. */
export function saeflowVersion(): string {
  if (cached === undefined) {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    cached = pkg.version ?? 'unknown';
  }
  return cached;
}
