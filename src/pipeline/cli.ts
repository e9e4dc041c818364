import { parseCliArgs } from './cli-args.js';
import { isUserError } from './errors.js';
import { RUNNER_FLAGS_HELP } from './cli-args.js';
import { runPipeline, signalExitCode } from './runner.js';

/** Entry point of `run-pipeline`; returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const args = parseCliArgs(argv);
    if (!args.pipelineFile) {
      process.stdout.write(`Usage: npx run-pipeline <pipeline-file.ts> [options]\n\n${RUNNER_FLAGS_HELP}\n`);
      return 0;
    }
    const outcome = await runPipeline(args, {
      stdout: (text) => process.stdout.write(text),
      signals: process,
      isTTY: Boolean(process.stderr.isTTY),
      cwd: process.cwd(),
    });
    if (outcome?.status === 'interrupted') return signalExitCode(outcome.signal ?? 'SIGINT');
    return 0;
  } catch (e) {
    if (isUserError(e)) {
      process.stderr.write(`error: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}
