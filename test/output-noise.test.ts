/**
 * What the tools print says what is true, once: help gives each default once, counts agree with their nouns,
 * an onnxruntime run does not name the TensorFlow.js backend, and sweeps are listed in numeric order.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findSaeFolders } from '../src/eval/sae-targets.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { loadPipeline, pipelineHelp, runPipeline } from '../src/pipeline/runner.js';
import { plural } from '../src/util/plural.js';
import { randomWindows, tempDir, tokenJsonl } from './eval-helpers.js';
import { MODEL_F32 } from './gpt2-fixture.js';
import { testIo } from './runner-io.js';

describe('output', () => {
  it('--help gives each option one default', async () => {
    for (const file of readdirSync('pipelines').filter((f) => f.endsWith('.ts'))) {
      const help = pipelineHelp(await loadPipeline(`pipelines/${file}`, process.cwd()), file);
      for (const line of help.split('\n'))
        expect(line.match(/\(default/g)?.length ?? 0, line).toBeLessThan(2);
      if (file === 'gpt2-resid.ts') {
        expect(help).toMatch(
          /--layer <integer >= 0 or none> +layer \(default: 8 for 12-layer models, else the middle layer\)$/m,
        );
      }
    }
  });

  it('counts agree with their nouns', () => {
    expect(plural(1, 'file')).toBe('1 file');
    expect(plural(2, 'file')).toBe('2 files');
    expect(plural(0, 'file')).toBe('0 files');
  });

  it('an onnxruntime run names onnxruntime as its compute, not the TensorFlow.js backend', async () => {
    const out = path.join(tempDir('noise-onnx'), 'run');
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/gpt2-resid.ts',
        ...['--model', MODEL_F32, '--dataset', tokenJsonl(randomWindows(20, 16, 5)), '--engine', 'onnx'],
        ...['--no-prepend_bos', '--disable_concat_sequences', '--context_size', '16', '--d_sae', '128'],
        ...['--train_batch_size_tokens', '128', '--training_tokens', '256', '--n_batches_in_buffer', '2'],
        ...['--out', out],
      ]),
      testIo(),
    );
    expect(outcome?.status).toBe('completed');
    const log = readFileSync(path.join(out, 'run.log'), 'utf8');
    expect(log).toContain('compute engine: onnxruntime-node on the CPU');
    expect(log).not.toContain('compute backend');
  });

  it('lists the SAEs of a sweep folder in numeric order', () => {
    const dir = tempDir('noise-order');
    for (const name of ['topk-k16', 'topk-k32', 'topk-k8']) {
      mkdirSync(path.join(dir, name));
      writeFileSync(path.join(dir, name, 'cfg.json'), '{}');
    }
    expect(findSaeFolders([dir]).map((s) => s.name)).toEqual(['topk-k8', 'topk-k16', 'topk-k32']);
  });
});
