export * from './activation-batch.js';
export * from './activation-batch-ops.js';
