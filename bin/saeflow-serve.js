#!/usr/bin/env node
// Serves an evaluation run's report and feature explorers on 127.0.0.1 (src/explorer/serve-cli.ts).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/explorer/serve-cli.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
setImmediate(() => process.exit(code));
