// A worker thread's entry: saeflow's modules are TypeScript run through tsx, whose loader a worker does not
// inherit from the thread that started it; register it here, then run the module the worker was made for.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.module);
