/**
 * Model weights that live in a file rather than in JavaScript memory, for models whose float32 weights do
 * not fit twice in RAM (Gemma 2 2B: 10.5 GB). The loader writes each large array, in the layout the forward
 * wants, into one float32 file and keeps only its place (`StoredWeight`); the onnx engine hands that place
 * to onnxruntime as ONNX external data, which onnxruntime maps from the file instead of copying (measured in
 * docs/large-models.md), so the weights sit in memory once, as page cache that every session shares. The
 * eager engine reads a stored weight back when it uploads it.
 *
 * The file is temporary: it lives in its own directory under the OS temp directory and is removed when the
 * process exits (or when `remove` is called); directories left by processes that were killed are swept the
 * next time one is created.
 */
import { closeSync, mkdtempSync, openSync, readSync, readdirSync, rmSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A float32 array's place in a weight file: `length` elements from byte `offset`. */
export class StoredWeight {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly length: number,
  ) {}

  get byteLength(): number {
    return this.length * 4;
  }

  /** The array, read from the file (for the eager engine and host-side uses such as dashboards). */
  read(): Float32Array {
    const out = new Float32Array(this.length);
    const bytes = new Uint8Array(out.buffer);
    const fd = openSync(this.file, 'r');
    try {
      let done = 0;
      while (done < bytes.length) {
        const n = readSync(fd, bytes, done, Math.min(1 << 30, bytes.length - done), this.offset + done);
        if (n === 0) throw new Error(`${this.file}: ended at byte ${this.offset + done} (was it removed?)`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    return out;
  }
}

/** A weight array as a family holds it: in memory, or stored in a weight file. */
export type Weight = Float32Array | StoredWeight;

/** `w` as a host array (a stored weight is read: the caller holds a copy of its size). */
export function inMemory(w: Weight): Float32Array {
  return w instanceof StoredWeight ? w.read() : w;
}

/** Where a loader puts each large array it has arranged: kept as it is, or written to a weight file. */
export interface WeightStore {
  put(a: Float32Array): Promise<Weight>;
}

/** Keeps every array in memory. */
export const memoryStore: WeightStore = { put: (a) => Promise.resolve(a) };

const PREFIX = 'saeflow-weights-';
/** onnxruntime maps each tensor; page-aligned offsets let it map without an adjusting copy. */
const ALIGN = 4096;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes weight directories whose process is gone (killed before its exit handler could run). */
function sweepStale(root: string): void {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return;
  }
  for (const name of entries) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) {
      rmSync(path.join(root, name), { recursive: true, force: true });
    }
  }
}

const live = new Set<string>();
let exitHook = false;

/** One float32 weight file being written; `put` appends an array and returns its place. */
export class WeightFile implements WeightStore {
  private end = 0;

  private constructor(
    readonly dir: string,
    readonly file: string,
    private readonly handle: FileHandle,
  ) {}

  /** A new weight file in its own directory under `root` (default: the OS temp directory). */
  static async create(root = tmpdir()): Promise<WeightFile> {
    sweepStale(root);
    const dir = mkdtempSync(path.join(root, `${PREFIX}${process.pid}-`));
    live.add(dir);
    if (!exitHook) {
      exitHook = true;
      process.on('exit', () => {
        for (const d of live) rmSync(d, { recursive: true, force: true });
      });
    }
    const file = path.join(dir, 'weights.f32');
    return new WeightFile(dir, file, await open(file, 'w'));
  }

  /** Bytes written so far (with alignment padding). */
  get bytes(): number {
    return this.end;
  }

  async put(a: Float32Array): Promise<StoredWeight> {
    const offset = Math.ceil(this.end / ALIGN) * ALIGN;
    this.end = offset + a.byteLength;
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    // Positioned writes: concurrent puts land in their own ranges.
    for (let done = 0; done < bytes.length;) {
      const n = Math.min(1 << 30, bytes.length - done);
      done += (await this.handle.write(bytes, done, n, offset + done)).bytesWritten;
    }
    return new StoredWeight(this.file, offset, a.length);
  }

  /** Closes the file for writing; its weights stay readable until `remove`. */
  async close(): Promise<void> {
    await this.handle.close();
  }

  /** Deletes the file and its directory now (sessions that mapped it keep their mapping). */
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this.dir);
  }
}
