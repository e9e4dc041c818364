/**
 * The README's example commands are runnable as written: every option exists and takes the value given, and
 * the sweep whose metrics the README states trains with the quickstart's learning rate, batch size and
 * normalisation (SAELens's defaults, made for millions of tokens, give far worse SAEs at 300k).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { applyCliOverrides, defaultsOf } from '../src/pipeline/resolve-config.js';
import { loadPipeline } from '../src/pipeline/runner.js';

/** `npx run-pipeline ...` commands of the README's sh blocks, continuation lines joined. */
function readmeRunCommands(): string[][] {
  const readme = readFileSync('README.md', 'utf8');
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks
    .flatMap((b) => b.replace(/\\\n\s*/g, ' ').split('\n'))
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l.includes('npx run-pipeline '))
    .map((l) => l.slice(l.indexOf('npx run-pipeline ')))
    .map((l) => {
      // The shell's quoting, for the JSON of --saes: single-quoted words stay whole.
      const words = [...l.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
      return words.slice(2);
    });
}

async function resolved(argv: string[]) {
  const args = parseCliArgs(argv);
  const pipeline = await loadPipeline(args.pipelineFile, process.cwd());
  return applyCliOverrides(
    pipeline.config,
    defaultsOf(pipeline.config),
    args.overrides,
    pipeline.name,
  ) as Record<string, unknown>;
}

describe("the README's example commands", () => {
  it('name options that exist, with values of the right type', async () => {
    const commands = readmeRunCommands();
    expect(commands.length).toBeGreaterThanOrEqual(6);
    for (const argv of commands) await expect(resolved(argv), argv.join(' ')).resolves.toBeDefined();
  });

  it('train the sweep whose metrics they state with the quickstart settings that make it usable', async () => {
    const sweep = readmeRunCommands().find(
      (a) => a[0] === 'pipelines/gpt2-resid.ts' && a.includes('--saes'),
    )!;
    const cfg = await resolved(sweep);
    const quickstart = readFileSync('pipelines/quickstart.ts', 'utf8');
    expect(cfg.saes).toEqual([{ k: 8 }, { k: 16 }, { k: 32 }]);
    expect(cfg.training_tokens).toBe(300_000);
    expect(quickstart).toContain(`train_batch_size_tokens: ${cfg.train_batch_size_tokens}`);
    expect(quickstart).toContain(`lr: opt.number(1e-3`);
    expect(cfg.lr).toBe(1e-3);
    expect(quickstart).toContain(`normalize_activations: '${String(cfg.normalize_activations)}'`);
    expect(cfg.engine).toBe('onnx');
    const readme = readFileSync('README.md', 'utf8');
    expect(readme).toContain('0.849 / 0.925 / 0.959');
  });
});
