import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { UserError } from '../../../pipeline/errors.js';
import type { Document } from '../types.js';
import { fileError } from './file-errors.js';
import { chooseField, toText, toTokenArray, type FieldOptions } from './fields.js';

/** Opens a Parquet file and parses its footer; a file that is not Parquet is a UserError naming it. */
export async function openParquet(file: string): Promise<{ buffer: AsyncBuffer; metadata: FileMetaData }> {
  let buffer: AsyncBuffer;
  try {
    buffer = await asyncBufferFromFile(file);
  } catch (err) {
    throw fileError(file, err);
  }
  // Magic, footer length, magic: anything shorter cannot be Parquet (and would fail obscurely).
  if (buffer.byteLength < 12) {
    throw new UserError(`${file}: not a readable Parquet file (only ${buffer.byteLength} bytes)`);
  }
  try {
    return { buffer, metadata: await parquetMetadataAsync(buffer) };
  } catch (err) {
    throw new UserError(`${file}: not a readable Parquet file (${(err as Error).message})`, { cause: err });
  }
}

/** Names of the top-level columns (a list column counts once, by its own name). */
export function parquetColumnNames(metadata: FileMetaData): string[] {
  return parquetSchema(metadata).children.map((c) => c.element.name);
}

/**
 * Documents from one column of a Parquet file (the Hugging Face dataset layout: `text`, or `tokens` /
 * `input_ids` lists for pre-tokenized data; see `chooseField`). Reads one row group at a time and only
 * that column, so memory is bounded by the largest row group, not the file. Snappy, gzip, zstd, brotli
 * and lz4 pages are decompressed by hyparquet-compressors.
 */
export async function* readParquet(file: string, opts: FieldOptions = {}): AsyncGenerator<Document> {
  const { buffer, metadata } = await openParquet(file);
  const choice = chooseField(parquetColumnNames(metadata), opts, file);
  let rowStart = 0;
  for (const [group, rowGroup] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(rowGroup.num_rows);
    if (rowEnd === rowStart) continue;
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({
        file: buffer,
        metadata,
        columns: [choice.name],
        rowStart,
        rowEnd,
        compressors,
      });
    } catch (err) {
      throw new UserError(
        `${file}: cannot decode column '${choice.name}' in row group ${group} (${(err as Error).message})`,
        { cause: err },
      );
    }
    if (rows.length !== rowEnd - rowStart) {
      throw new UserError(
        `${file}: row group ${group} should hold ${rowEnd - rowStart} rows but ${rows.length} were decoded`,
      );
    }
    for (let i = 0; i < rows.length; i++) {
      const where = `${file}#${rowStart + i}`;
      const value = (rows[i] as Record<string, unknown>)[choice.name];
      yield choice.kind === 'text'
        ? { id: where, text: toText(value, choice.name, where) }
        : { id: where, tokens: toTokenArray(value, choice.name, where) };
    }
    rowStart = rowEnd;
  }
}
