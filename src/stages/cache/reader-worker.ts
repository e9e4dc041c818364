/**
 * The cache reader in a worker thread (see read-in-worker.ts): reads batches as the main thread grants
 * credits and posts them; an error is posted with whether it was a UserError, then the worker idles until
 * it is terminated.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { UserError } from '../../pipeline/errors.js';
import { packBatch } from './batch-transfer.js';
import { readActivationBatches, type CacheReaderOptions } from './cache-reader.js';

const port = parentPort!;
const batches = readActivationBatches((workerData as { data: CacheReaderOptions }).data);
let credits = 0;
let pumping = false;
let finished = false;

async function pump(): Promise<void> {
  if (pumping || finished) return;
  pumping = true;
  try {
    while (credits > 0) {
      const step = await batches.next();
      if (step.done) {
        finished = true;
        port.postMessage({ type: 'end' });
        return;
      }
      credits -= 1;
      const { message, transfer } = packBatch(step.value);
      port.postMessage({ type: 'batch', batch: message }, transfer);
    }
  } catch (err) {
    finished = true;
    port.postMessage({
      type: 'error',
      message: err instanceof Error ? err.message : String(err),
      user: err instanceof UserError,
    });
  } finally {
    pumping = false;
  }
}

port.on('message', (m: { pull: number }) => {
  credits += m.pull;
  void pump();
});
