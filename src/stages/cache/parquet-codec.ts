import { openAsBlob } from 'node:fs';
import { type RecordBatch, type Schema, Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import * as parquetWasm from 'parquet-wasm';
import { addPageChecksums } from '../../io/parquet-pages/index.js';
import { isUserError, UserError } from '../../pipeline/errors.js';

/**
 * Parquet encoding and decoding through parquet-wasm (arrow-rs compiled to WebAssembly): it writes real
 * `FixedSizeList<Float32 | Float16>` columns that pyarrow and DuckDB read, and decodes them straight into
 * Arrow buffers. See docs/parquet-library.md for the measurements behind this choice.
 *
 * In Node, the `parquet-wasm` entry resolves to its CommonJS build, which instantiates the module
 * synchronously on import: there is no init() to await.
 */

export type ParquetCompression = 'none' | 'snappy' | 'zstd';
export const PARQUET_COMPRESSIONS: readonly ParquetCompression[] = ['none', 'snappy', 'zstd'];

export interface ParquetEncodeOptions {
  readonly compression: ParquetCompression;
  /** Rows per row group: the unit a reader decompresses at once, so it bounds the reader's memory. */
  readonly rowGroupRows: number;
  /** A CRC-32 in every page header (default true); off only to measure what they cost. */
  readonly pageChecksums?: boolean;
}

const CODECS: Record<ParquetCompression, parquetWasm.Compression> = {
  none: parquetWasm.Compression.UNCOMPRESSED,
  snappy: parquetWasm.Compression.SNAPPY,
  zstd: parquetWasm.Compression.ZSTD,
};

/**
 * Encodes one record batch as a complete Parquet file in memory, with a CRC-32 in every page header
 * (parquet-wasm cannot write them, so they are added to its output: src/io/parquet-pages/). The output
 * depends only on the batch's contents and the options (no timestamps), which is what makes resumed caches
 * byte-identical.
 */
export function encodeParquet(batch: RecordBatch, options: ParquetEncodeOptions): Uint8Array {
  const ipc = tableToIPC(new Table([batch]), 'stream');
  // Random-looking float activations gain nothing from dictionaries, and min/max statistics of list
  // elements cost time without helping any reader skip rows.
  const properties = new parquetWasm.WriterPropertiesBuilder()
    .setCompression(CODECS[options.compression])
    .setMaxRowGroupSize(options.rowGroupRows)
    .setDictionaryEnabled(false)
    .setStatisticsEnabled(parquetWasm.EnabledStatistics.None)
    .build();
  const table = parquetWasm.Table.fromIPCStream(ipc);
  // writeParquet takes ownership of (and frees) both wasm objects.
  const bytes = parquetWasm.writeParquet(table, properties);
  return options.pageChecksums === false ? bytes : addPageChecksums(bytes);
}

/** An open Parquet file: its footer is parsed, column data is read on demand. */
export interface ParquetSource {
  readonly path: string;
  readonly numRows: number;
  readonly numRowGroups: number;
  /** The Arrow schema of the file (from its ARROW:schema metadata when present, else from the Parquet schema). */
  readonly schema: Schema;
  /**
   * Streams record batches of at most `batchSize` rows holding only `columns` (all when omitted), from row
   * `offset` on (row groups that end before it are not decoded).
   */
  batches(options: {
    columns?: readonly string[];
    batchSize: number;
    offset?: number;
  }): AsyncIterable<RecordBatch>;
  close(): void;
}

/**
 * Some damaged files make parquet-wasm's Rust code panic inside a wasm future, or inside the background
 * pull of the stream it returns; the trap is then thrown from a microtask we hold no promise for and
 * reaches the process as an uncaught exception (a crash, or a read that never answers). While a guard is
 * held, such a trap instead rejects its `trapped` promise with a UserError naming the file. Caches are
 * protected beforehand (their sha256 is checked before parquet-wasm sees a byte); plain Parquet files
 * rely on this.
 */
class WasmGuard {
  private static readonly active = new Set<WasmGuard>();
  private static onException = (err: unknown): void => {
    // WebAssembly.RuntimeError: the trap a Rust panic compiles to. Anything else is not ours to take.
    if (!(err instanceof Error && err.name === 'RuntimeError')) throw err;
    for (const guard of WasmGuard.active) guard.reject(err);
  };

  readonly trapped: Promise<never>;
  private reject: (err: Error) => void = () => undefined;

  constructor(private readonly path: string) {
    this.trapped = new Promise<never>((_, reject) => {
      this.reject = (err) =>
        reject(
          new UserError(`${path}: corrupt Parquet data (the decoder aborted: ${err.message})`, {
            cause: err,
          }),
        );
    });
    this.trapped.catch(() => undefined);
    if (WasmGuard.active.size === 0) process.on('uncaughtException', WasmGuard.onException);
    WasmGuard.active.add(this);
  }

  /** `work`, or the UserError of a trap that happened while the guard was held. */
  run<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.trapped]);
  }

  release(): void {
    if (!WasmGuard.active.delete(this)) return;
    if (WasmGuard.active.size === 0) process.off('uncaughtException', WasmGuard.onException);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Opens a Parquet file for reading; a missing, truncated or corrupt footer is a UserError naming the file. */
export async function openParquet(path: string): Promise<ParquetSource> {
  let file: parquetWasm.ParquetFile;
  try {
    const blob = await openAsBlob(path);
    const guard = new WasmGuard(path);
    try {
      file = await guard.run(parquetWasm.ParquetFile.fromFile(blob));
    } finally {
      guard.release();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`${path}: file not found`);
    throw new UserError(`${path}: not a readable Parquet file (${describe(err)})`, { cause: err });
  }
  try {
    const metadata = file.metadata();
    const fileMetadata = metadata.fileMetadata();
    const numRows = fileMetadata.numRows();
    const numRowGroups = metadata.numRowGroups();
    fileMetadata.free();
    metadata.free();
    const schema = tableFromIPC(file.schema().intoIPCStream()).schema;
    return {
      path,
      numRows,
      numRowGroups,
      schema,
      batches: (options) => readBatches(file, path, options),
      close: () => file.free(),
    };
  } catch (err) {
    file.free();
    throw new UserError(`${path}: cannot read the Parquet schema (${describe(err)})`, { cause: err });
  }
}

async function* readBatches(
  file: parquetWasm.ParquetFile,
  path: string,
  options: { columns?: readonly string[]; batchSize: number; offset?: number },
): AsyncGenerator<RecordBatch> {
  let stream: ReadableStream<parquetWasm.RecordBatch>;
  const guard = new WasmGuard(path);
  try {
    stream = await guard.run(
      file.stream({
        batchSize: options.batchSize,
        ...(options.columns ? { columns: [...options.columns] } : {}),
        ...(options.offset ? { offset: options.offset } : {}),
      }),
    );
  } catch (err) {
    guard.release();
    if (isUserError(err)) throw err;
    throw new UserError(`${path}: cannot read Parquet data (${describe(err)})`, { cause: err });
  }
  const reader = stream.getReader();
  try {
    for (;;) {
      let step: Awaited<ReturnType<typeof reader.read>>;
      try {
        step = await guard.run(reader.read());
      } catch (err) {
        if (isUserError(err)) throw err;
        throw new UserError(`${path}: corrupt Parquet data (${describe(err)})`, { cause: err });
      }
      if (step.done) return;
      // intoIPCStream frees the wasm batch; the Arrow JS table views the returned bytes without copying.
      const table = tableFromIPC(step.value.intoIPCStream());
      for (const batch of table.batches) yield batch;
    }
  } finally {
    // A trap during cancel is as harmless as one during a read; the guard goes once it is done.
    await guard.run(reader.cancel()).catch(() => undefined);
    guard.release();
  }
}
