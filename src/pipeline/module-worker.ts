import { Worker } from 'node:worker_threads';

/**
 * Starts `module` (a TypeScript module's URL) in a worker thread with `data` as its `workerData.data`.
 * The bootstrap registers tsx in the worker, so the module may import any of saeflow's sources.
 */
export function startModuleWorker(module: URL, data: unknown): Worker {
  return new Worker(new URL('./worker-bootstrap.mjs', import.meta.url), {
    workerData: { module: module.href, data },
  });
}
