import { readdir, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { resolveDatasetFiles } from '../../../hub/datasets.js';
import { UserError } from '../../../pipeline/errors.js';
import { EMBEDDED_CORPORA, isCorpusName, type CorpusName } from './corpora.js';
import { plural } from '../../../util/plural.js';

export type FileFormat = 'text' | 'jsonl' | 'parquet';

const FORMAT_BY_EXTENSION: Record<string, FileFormat> = {
  '.txt': 'text',
  '.jsonl': 'jsonl',
  '.json': 'jsonl',
  '.parquet': 'parquet',
};
const SUPPORTED = Object.keys(FORMAT_BY_EXTENSION).join(', ');

/** The reader for a file, by extension (case-insensitive); undefined when not supported. */
export function formatOf(file: string): FileFormat | undefined {
  return FORMAT_BY_EXTENSION[path.extname(file).toLowerCase()];
}

/** What a `dataset` option resolved to, for readers and for the run log. */
export type DatasetDescription =
  { kind: 'files'; spec: string; files: string[] } | { kind: 'corpus'; spec: string; name: CorpusName };

/**
 * Resolves a `dataset` option: an existing file, a directory (every supported file inside, recursively,
 * hidden ones skipped, sorted by path), a glob (`data/*.jsonl`), or the name of an embedded corpus.
 * An existing path wins over a corpus of the same name. Files come back as absolute paths.
 */
export async function resolveDataset(spec: string, opts: { cwd?: string } = {}): Promise<DatasetDescription> {
  if (typeof spec !== 'string' || spec.trim() === '')
    throw new UserError('dataset must be a non-empty string');
  const cwd = opts.cwd ?? process.cwd();
  const target = path.resolve(cwd, spec);
  let info: Stats | undefined;
  try {
    info = await stat(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
  }
  if (info?.isFile()) {
    if (!formatOf(target)) throw new UserError(`${spec}: unsupported file type (supported: ${SUPPORTED})`);
    return { kind: 'files', spec, files: [target] };
  }
  if (info?.isDirectory()) {
    const files = await supportedFilesIn(target);
    if (files.length === 0) throw new UserError(`directory ${spec} holds no ${SUPPORTED} files`);
    return { kind: 'files', spec, files };
  }
  if (isCorpusName(spec)) return { kind: 'corpus', spec, name: spec };
  if (isDynamicPattern(spec)) {
    const matches = await glob(spec, { cwd, absolute: true, onlyFiles: true, dot: false });
    const files = matches.filter((f) => formatOf(f) !== undefined).sort(byCodePoint);
    if (files.length === 0) {
      const others =
        matches.length > 0
          ? ` (it matches ${plural(matches.length, 'file')}, none of them ${SUPPORTED})`
          : '';
      throw new UserError(`no dataset files match ${spec}${others}`);
    }
    return { kind: 'files', spec, files };
  }
  if (formatOf(spec)) {
    throw new UserError(`file not found: ${spec}${target === spec ? '' : ` (resolved to ${target})`}`);
  }
  if (HUB_DATASET_ID.test(spec)) {
    // A Hugging Face dataset id: its Parquet files, from the local cache or downloaded into it.
    const resolved = await resolveDatasetFiles(spec);
    const files = resolved.files.filter((f) => formatOf(f) !== undefined).sort(byCodePoint);
    if (files.length === 0) throw new UserError(`Hugging Face dataset ${spec} has no ${SUPPORTED} files`);
    return { kind: 'files', spec, files };
  }
  throw new UserError(
    `dataset '${spec}' not found: not a file, directory or glob pattern, nor an embedded corpus (${EMBEDDED_CORPORA.join(', ')}), nor a Hugging Face dataset id (org/name)`,
  );
}

const HUB_DATASET_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

async function supportedFilesIn(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  const candidates = entries
    .filter((rel) => formatOf(rel) !== undefined && !rel.split(path.sep).some((part) => part.startsWith('.')))
    .map((rel) => path.join(dir, rel));
  const files: string[] = [];
  for (const file of candidates) if ((await stat(file)).isFile()) files.push(file);
  return files.sort(byCodePoint);
}

/** Locale-independent order, so that a directory reads the same way on every machine. */
function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One line for the run log. */
export function describeDataset(d: DatasetDescription): string {
  if (d.kind === 'corpus') return `embedded corpus '${d.name}'`;
  const shown = d.files.slice(0, 5).join(', ');
  const more = d.files.length > 5 ? `, ... (${d.files.length - 5} more)` : '';
  return `${d.files.length} file${d.files.length === 1 ? '' : 's'} from '${d.spec}': ${shown}${more}`;
}
