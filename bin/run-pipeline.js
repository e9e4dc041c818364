#!/usr/bin/env node
// Pipeline files are TypeScript: tsx's loader lets Node import them (and our sources) without a build.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/pipeline/cli.ts');
const code = await main(process.argv.slice(2));
// Let stdout/stderr drain before exiting; pending wasm/tfjs handles would otherwise keep Node alive.
process.exitCode = code;
setImmediate(() => process.exit(code));
