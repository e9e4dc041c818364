/**
 * What a trained SAE carries to the tools that read it: cfg.json records the model processing it was trained
 * with (SAELens's `model_from_pretrained_kwargs`), eval-sae evaluates it on that model and on held-out text by
 * default, convert-sae keeps the record, and inspect-sae finds the eval.json eval-sae wrote for it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FiringStats } from '../src/sae/firing-stats.js';
import { evalProcessing } from '../src/eval/model-processing.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { defaultsOf } from '../src/pipeline/resolve-config.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { trainingOptions } from '../src/stages/train/training-pipeline.js';
import evalSae from '../pipelines/eval-sae.js';
import { randomWindows, tempDir, tokenJsonl } from './eval-helpers.js';
import { MODEL_F32 } from './gpt2-fixture.js';
import { testIo } from './runner-io.js';

const SEQ = 16;
const readJson = (...p: string[]) => JSON.parse(readFileSync(path.join(...p), 'utf8'));
const fixtureText = ['--no-prepend_bos', '--disable_concat_sequences', '--context_size', String(SEQ)];

let root: string;
let trainRun: string;
let heldOut: string;
const SAE = 'topk-blocks.1.hook_resid_pre';

beforeAll(async () => {
  root = tempDir('records');
  trainRun = path.join(root, 'train');
  const outcome = await runPipeline(
    parseCliArgs([
      'pipelines/gpt2-resid.ts',
      ...['--model', MODEL_F32, '--dataset', tokenJsonl(randomWindows(40, SEQ, 1)), ...fixtureText],
      ...['--layer', '1', '--k', '4', '--d_sae', '1024', '--processing', 'center_writing_weights'],
      ...['--train_batch_size_tokens', '128', '--training_tokens', '512', '--n_batches_in_buffer', '2'],
      ...['--backend', 'wasm', '--out', trainRun],
    ]),
    testIo(),
  );
  expect(outcome?.status).toBe('completed');
  heldOut = tokenJsonl(randomWindows(8, SEQ, 2));
});

const evaluate = (out: string, extra: string[] = []) =>
  runPipeline(
    parseCliArgs([
      'pipelines/eval-sae.ts',
      ...['--sae', trainRun, '--model', MODEL_F32, '--dataset', heldOut, ...fixtureText],
      ...['--n_eval_tokens', String(8 * SEQ), '--n_dashboard_features', '0', '--backend', 'wasm'],
      ...['--out', out, ...extra],
    ]),
    testIo(),
  );

describe('a trained SAE records how its model was processed', () => {
  it('cfg.json has model_from_pretrained_kwargs, as SAELens writes it', () => {
    const cfg = readJson(trainRun, 'saes', SAE, 'cfg.json');
    expect(cfg.metadata.model_from_pretrained_kwargs).toEqual({ center_writing_weights: true });
  });

  it('eval-sae evaluates on the processing cfg.json records unless told otherwise', async () => {
    const byDefault = await evaluate(path.join(root, 'eval-default'));
    const centred = await evaluate(path.join(root, 'eval-centred'), [
      '--processing',
      'center_writing_weights',
    ]);
    const plain = await evaluate(path.join(root, 'eval-plain'), ['--processing', 'none']);
    const ev = (o: typeof byDefault) =>
      (o?.result as { saes: Array<{ explained_variance: number }> }).saes[0]!.explained_variance;
    expect(ev(byDefault)).toBe(ev(centred));
    expect(ev(plain)).not.toBe(ev(centred));
    expect(readFileSync(path.join(root, 'eval-default', 'run.log'), 'utf8')).toContain(
      'model weight processing: center_writing_weights',
    );
    expect(readFileSync(path.join(root, 'eval-plain', 'run.log'), 'utf8')).toContain(
      `SAE ${SAE} was trained on a model with processing center_writing_weights; evaluating it with --processing none`,
    );
  });

  it('SAEs recorded with different processings are not evaluated together without --processing', () => {
    const targets = [
      { name: 'a', config: { metadata: { model_from_pretrained_kwargs: { center_writing_weights: true } } } },
      { name: 'b', config: { metadata: {} } },
    ];
    expect(() => evalProcessing(null, targets)).toThrow(/a: center_writing_weights, b: none/);
    expect(evalProcessing('none', targets).mismatched).toEqual([
      { name: 'a', recorded: 'center_writing_weights' },
    ]);
  });

  it('convert-sae keeps the record', async () => {
    const out = path.join(root, 'converted');
    const outcome = await runPipeline(
      parseCliArgs(['pipelines/convert-sae.ts', '--sae', path.join(trainRun, 'saes', SAE), '--out', out]),
      testIo(),
    );
    expect(outcome?.result).toMatchObject({ required_processing: 'center_writing_weights' });
    expect(readJson(out, 'sae', 'cfg.json').metadata.model_from_pretrained_kwargs).toEqual({
      center_writing_weights: true,
    });
  });

  it('inspect-sae finds the eval.json eval-sae wrote for the SAE in a sibling run', async () => {
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/inspect-sae.ts',
        ...['--sae', path.join(trainRun, 'saes', SAE), '--out', path.join(root, 'inspect')],
      ]),
      testIo(),
    );
    const found = (outcome?.result as { eval: { file: string; headline: Record<string, number> } | null })
      .eval;
    expect(found).not.toBeNull();
    // The newest of the three evaluations above.
    expect(found!.file).toBe(path.join(root, 'eval-plain', SAE, 'eval.json'));
    expect(found!.headline.l0).toBeGreaterThan(0);
  });

  it('training reports features never fired next to dead-by-window, and says when the run is shorter than the window', () => {
    const train = readFileSync(path.join(trainRun, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number | string>)
      .filter((r) => r.event === 'train');
    expect(train.length).toBe(4);
    for (const r of train) {
      // Four steps against a 1000-step window: nothing can be dead yet, while many of 1024 features have not fired yet.
      expect(r.dead_features).toBe(0);
      expect(r.never_fired_features).toBeGreaterThan(0);
    }
    const counts = train.map((r) => r.never_fired_features as number);
    expect(counts).toEqual([...counts].sort((a, b) => b - a));
    const log = readFileSync(path.join(trainRun, 'run.log'), 'utf8');
    expect(log).toContain(
      `SAE ${SAE}: 4 training steps, no more than dead_feature_window (1000): no feature can count as dead, and AuxK, which revives dead features, never starts`,
    );
    expect(log).toMatch(/never fired \d+/);
  });

  it('the firing statistics count features that never fired since the start, not by window', () => {
    const stats = new FiringStats(4);
    stats.record([0, 2, 0, 0], 8);
    stats.record([0, 0, 1, 0], 8);
    expect(stats.neverFiredCount()).toBe(2);
    expect(stats.deadCount(2)).toBe(0);
    expect(stats.deadCount(1)).toBe(2);
  });

  it('eval-sae gives dashboards to the features named with --features', async () => {
    const out = path.join(root, 'eval-features');
    const outcome = await evaluate(out, ['--n_dashboard_features', '2', '--features', '3,17']);
    expect(outcome?.status).toBe('completed');
    const dashboards = readJson(out, 'report-data.json').dashboards as Array<{
      sae: string;
      feature: number;
    }>;
    expect(dashboards.map((d) => d.feature)).toEqual([3, 17]);
    await expect(evaluate(path.join(root, 'eval-bad-features'), ['--features', '1024'])).rejects.toThrow(
      `--features 1024: SAE ${SAE} has features 0..1023`,
    );
  });

  it('eval-sae evaluates on held-out text by default, not on the training default', () => {
    const evalDefault = defaultsOf(evalSae.config).dataset;
    expect(evalDefault).toBe('sotu');
    expect(evalDefault).not.toBe(defaultsOf(trainingOptions).dataset);
  });
});
