/**
 * `npx saeflow-serve [folder] [--port N]`: serves an evaluation run (or any folder) on 127.0.0.1 with the
 * cross-origin-isolation headers the explorers need for WebAssembly threads, and prints the addresses of
 * its report and explorers. Runs until interrupted.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PAGE_FILE } from './manifest.js';
import { serveFolder } from './static-server.js';
import type { StaticServer } from './static-server.js';

export const DEFAULT_PORT = 8000;
const USAGE = `Usage: npx saeflow-serve [folder, default .] [--port N, default ${DEFAULT_PORT}; 0: any free port]`;
/** Explorers lie at <run>/explorer/<sae>/ (eval-sae) or at a folder's top (explore-sae): a shallow search. */
const MAX_DEPTH = 3;

/** The pages worth printing, as URL paths: report.html at the top, then every explorer.html found. */
export async function findPages(dir: string): Promise<{ report: string | null; explorers: string[] }> {
  const explorers: string[] = [];
  const walk = async (rel: string[], depth: number): Promise<void> => {
    const entries = await readdir(path.join(dir, ...rel), { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
    for (const entry of entries) {
      // Hidden names are not served; symlinked folders are not followed (a link can loop).
      if (entry.name.startsWith('.')) continue;
      if (entry.isFile() && entry.name === PAGE_FILE) explorers.push([...rel, entry.name].join('/'));
      if (entry.isDirectory() && depth < MAX_DEPTH) await walk([...rel, entry.name], depth + 1);
    }
  };
  await walk([], 0);
  const url = (p: string) => `/${p.split('/').map(encodeURIComponent).join('/')}`;
  return {
    report: existsSync(path.join(dir, 'report.html')) ? '/report.html' : null,
    explorers: explorers.map(url),
  };
}

async function listen(dir: string, port: number, explicit: boolean): Promise<StaticServer> {
  try {
    return await serveFolder(dir, { port });
  } catch (e) {
    // The default port taken (another saeflow-serve, say): any free one will do; an asked-for one must fail.
    if (explicit || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    return serveFolder(dir);
  }
}

/** Starts the server and prints where; resolves to the server (a test closes it), or null on bad usage. */
export async function serve(
  argv: readonly string[],
  print: (line: string) => void,
): Promise<StaticServer | null> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, options: { port: { type: 'string' } } });
  } catch (e) {
    print(`${(e as Error).message}\n${USAGE}`);
    return null;
  }
  const { values, positionals } = parsed;
  const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
  if (positionals.length > 1 || !Number.isInteger(port) || port < 0 || port > 65535) {
    print(USAGE);
    return null;
  }
  const dir = path.resolve(positionals[0] ?? '.');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    print(`saeflow-serve: ${dir} is not a folder\n${USAGE}`);
    return null;
  }
  const server = await listen(dir, port, values.port !== undefined);
  const pages = await findPages(dir);
  const at = (p: string) => new URL(p.slice(1), server.url).href;
  print(`serving ${dir} at ${server.url} (cross-origin isolated; Ctrl-C stops)`);
  if (pages.report) print(`  report:   ${at(pages.report)}`);
  for (const p of pages.explorers) print(`  explorer: ${at(p)}`);
  if (!pages.report && pages.explorers.length === 0) print('  (no report.html or explorer.html found in it)');
  return server;
}

/** Entry point of bin/saeflow-serve.js: the exit code on bad usage, else never resolves. */
export async function main(argv: readonly string[]): Promise<number> {
  const server = await serve(argv, (line) => process.stdout.write(`${line}\n`));
  if (server === null) return 2;
  await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
  await server.close();
  return 0;
}
