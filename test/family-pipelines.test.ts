/**
 * The pipelines on every model family, end to end from text: cache-activations tokenizes the fixtures'
 * reference texts with the model's own tokenizer, packs them as TransformerLens would (BOS per the family),
 * and its cache holds transformers' activations for exactly the reference token ids; a training run on the
 * live model writes an SAE that eval-sae (--model auto) evaluates on the same model.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { activationIds, hookMatrix } from '../src/arrow/activation-batch.js';
import { readSafetensors, tensorToFloat32 } from '../src/io/safetensors.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { readActivationBatches } from '../src/stages/cache/index.js';
import { relErr } from './gpt2-fixture.js';
import { testIo } from './runner-io.js';

const FAMILIES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'families');
const FAMILIES = ['gemma2', 'gemma', 'llama', 'mistral', 'qwen2', 'gpt_neox'];
const HOOKS = ['blocks.1.hook_resid_post', 'blocks.0.attn.hook_k', 'blocks.1.mlp.hook_post'];

const run = async (argv: string[], stdout: string[] = []) => {
  const outcome = await runPipeline(parseCliArgs(argv), testIo(undefined, stdout));
  expect(outcome?.status, stdout.join('')).toBe('completed');
  return outcome!;
};

describe.each(FAMILIES)('pipelines on %s', (family) => {
  const modelDir = path.join(FAMILIES_DIR, family, 'model');
  const reference = JSON.parse(readFileSync(path.join(FAMILIES_DIR, family, 'reference.json'), 'utf8')) as {
    reference_texts: string[];
    reference_tokens: number[][];
  };

  it('cache-activations from text: the reference token ids and transformers activations', async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), `saeflow-${family}-`));
    const dataset = path.join(tmp, 'texts.jsonl');
    writeFileSync(
      dataset,
      reference.reference_texts.map((text) => JSON.stringify({ text })).join('\n') + '\n',
    );
    const out = path.join(tmp, 'cache');
    await run([
      'pipelines/cache-activations.ts',
      ...['--model', modelDir, '--dataset', dataset, '--hooks', HOOKS.join(',')],
      ...['--context_size', '24', '--disable_concat_sequences', '--batch_size', '2', '--out', out],
    ]);
    const tokens: number[] = [];
    const rows: Record<string, number[]> = Object.fromEntries(HOOKS.map((h) => [h, []]));
    for await (const batch of readActivationBatches({ path: out })) {
      tokens.push(...activationIds(batch)!.token);
      for (const h of HOOKS) rows[h]!.push(...hookMatrix(batch, h));
    }
    expect(tokens).toEqual(reference.reference_tokens.flat());
    const { tensors } = await readSafetensors(path.join(FAMILIES_DIR, family, 'reference.safetensors'));
    for (const h of HOOKS) expect(relErr(rows[h]!, tensorToFloat32(tensors.get(h)!, h))).toBeLessThan(1e-4);
  }, 120_000);

  it('trains an SAE on the live model and evaluates it on the same model', async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), `saeflow-${family}-train-`));
    const train = path.join(tmp, 'train');
    await run([
      'pipelines/gpt2-resid.ts',
      ...['--model', modelDir, '--layer', '1', '--architecture', 'topk', '--k', '8', '--d_sae', '128'],
      ...['--training_tokens', '2048', '--train_batch_size_tokens', '512', '--context_size', '64'],
      ...['--lr', '0.003', '--normalize_activations', 'expected_average_only_in', '--out', train],
    ]);
    const cfg = JSON.parse(
      readFileSync(path.join(train, 'saes', 'topk-blocks.1.hook_resid_pre', 'cfg.json'), 'utf8'),
    );
    expect(cfg.metadata.saeflow_model_dir).toBe(modelDir);
    const stdout: string[] = [];
    const evalOut = path.join(tmp, 'eval');
    await run(
      [
        'pipelines/eval-sae.ts',
        '--sae',
        train,
        '--n_eval_tokens',
        '256',
        '--n_dashboard_features',
        '0',
        '--out',
        evalOut,
      ],
      stdout,
    );
    const log = readFileSync(path.join(evalOut, 'run.log'), 'utf8');
    expect(log).toContain(`model: local directory ${modelDir} (the SAEs' training model)`);
    const metrics = JSON.parse(
      readFileSync(path.join(evalOut, 'topk-blocks.1.hook_resid_pre', 'eval.json'), 'utf8'),
    );
    const flat = JSON.stringify(metrics);
    expect(flat).toMatch(/"l0":8[,}]/);
    expect(flat).toMatch(/"ce_loss_score":-?[0-9.e-]+/);
  }, 180_000);
});
