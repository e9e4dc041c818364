/**
 * readActivationBatches in a worker thread, a few batches ahead of the consumer. onnxruntime-node runs a
 * session synchronously on the main thread, so a reader on that thread decodes Parquet only between
 * training steps; in a worker it decodes while a step runs. Same batches, same order, same errors.
 */
import type { ActivationBatch } from '../../arrow/index.js';
import { UserError } from '../../pipeline/errors.js';
import { startModuleWorker } from '../../pipeline/module-worker.js';
import type { TransferredBatch } from './batch-transfer.js';
import { unpackBatch } from './batch-transfer.js';
import type { CacheReaderOptions } from './cache-reader.js';

type Message =
  | { type: 'batch'; batch: TransferredBatch }
  | { type: 'end' }
  | { type: 'error'; message: string; user: boolean };

/** Batches the worker may read ahead of the one being consumed. */
const AHEAD = 2;

export async function* readActivationBatchesInWorker(
  options: CacheReaderOptions,
): AsyncGenerator<ActivationBatch> {
  // The flow stays with the consumer (fromPull waits on it); the worker reads only what it is granted.
  const { flow: _flow, ...transferable } = options;
  const worker = startModuleWorker(new URL('./reader-worker.ts', import.meta.url), transferable);
  const inbox: Message[] = [];
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    wake?.();
    wake = null;
  };
  worker.on('message', (m: Message) => {
    inbox.push(m);
    notify();
  });
  worker.on('error', (err) => {
    failure = err;
    notify();
  });
  worker.on('exit', (code) => {
    failure ??= new Error(`the cache reader's worker thread exited (code ${code})`);
    notify();
  });
  try {
    worker.postMessage({ pull: AHEAD });
    for (;;) {
      while (inbox.length === 0) {
        if (failure) throw failure;
        await new Promise<void>((resolve) => (wake = resolve));
      }
      const m = inbox.shift()!;
      if (m.type === 'end') return;
      if (m.type === 'error') throw m.user ? new UserError(m.message) : new Error(m.message);
      worker.postMessage({ pull: 1 });
      yield unpackBatch(m.batch);
    }
  } finally {
    worker.removeAllListeners('exit');
    await worker.terminate();
  }
}
