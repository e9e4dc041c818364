/**
 * SAELens's runner config read by the training pipelines: its names on the command line and in `--config`
 * (a `LanguageModelSAERunnerConfig.to_dict()` dump), per-SAE fields as top-level options, and the fields saeflow
 * does not implement either accepted with a note or refused with saeflow's equivalent.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { translateForeignNames } from '../src/pipeline/foreign-names.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { SAELENS_RUNNER_NAMES } from '../src/stages/train/saelens-names.js';
import { sweepSaeName } from '../src/stages/train/sae-names.js';
import { naturalCompare } from '../src/util/natural-compare.js';
import { MODEL_F32 } from './gpt2-fixture.js';
import { testIo } from './runner-io.js';
import { Mulberry32 } from '../src/util/random.js';

const tmp = (p: string) => mkdtempSync(path.join(tmpdir(), `saeflow-${p}-`));

function dataset(): string {
  const rng = new Mulberry32(3);
  const lines = Array.from({ length: 20 }, () =>
    JSON.stringify({ tokens: Array.from({ length: 200 }, () => Math.floor(rng.next() * 1000)) }),
  );
  const file = path.join(tmp('names-data'), 'tokens.jsonl');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const small = [
  ...[
    '--context_size',
    '32',
    '--no-prepend_bos',
    '--disable_concat_sequences',
    '--backend',
    'cpu',
    '--train_batch_size_tokens',
    '256',
  ],
  ...['--n_batches_in_buffer', '2', '--training_tokens', '512', '--n_batches_for_norm_estimate', '1'],
];

const readJson = (...p: string[]) => JSON.parse(readFileSync(path.join(...p), 'utf8'));
/** The full training config of each SAE, from the checkpoint's trainer state. */
async function trainerConfigs(out: string): Promise<Array<Record<string, unknown>>> {
  const names = readJson(out, 'checkpoint', 'trainer.json').saes as string[];
  return Promise.all(
    names.map(async (n) => {
      const { metadata } = await readSafetensors(
        path.join(out, 'checkpoint', n, 'trainer_state.safetensors'),
      );
      return (JSON.parse(metadata['saeflow_trainer_state']!) as { config: Record<string, unknown> }).config;
    }),
  );
}

/** What `LanguageModelSAERunnerConfig(sae=TopKTrainingSAEConfig(d_in=64, d_sae=128, k=8), ...).to_dict()` gives. */
function saelensDump(model: string, data: string): Record<string, unknown> {
  return {
    sae: {
      d_in: 64,
      d_sae: 128,
      dtype: 'float32',
      device: 'cpu',
      apply_b_dec_to_input: true,
      normalize_activations: 'none',
      reshape_activations: 'none',
      metadata: {
        sae_lens_version: '6.18.0',
        sae_lens_training_version: '6.18.0',
        dataset_path: data,
        hook_name: 'blocks.1.hook_resid_pre',
        model_name: model,
        model_class_name: 'HookedTransformer',
        hook_head_index: null,
        context_size: 32,
        seqpos_slice: [null],
        model_from_pretrained_kwargs: {},
        prepend_bos: false,
        exclude_special_tokens: false,
        sequence_separator_token: 'bos',
        disable_concat_sequences: true,
      },
      decoder_init_norm: 0.1,
      k: 8,
      use_sparse_activations: false,
      aux_loss_coefficient: 0.5,
      rescale_acts_by_decoder_norm: true,
      architecture: 'topk',
    },
    model_name: model,
    model_class_name: 'HookedTransformer',
    hook_name: 'blocks.1.hook_resid_pre',
    hook_eval: 'NOT_IN_USE',
    hook_head_index: null,
    dataset_path: data,
    dataset_trust_remote_code: true,
    streaming: true,
    is_dataset_tokenized: true,
    context_size: 32,
    use_cached_activations: false,
    cached_activations_path: `activations/${data}/${model}/blocks.1.hook_resid_pre`,
    from_pretrained_path: null,
    n_batches_in_buffer: 2,
    training_tokens: 512,
    store_batch_size_prompts: 8,
    seqpos_slice: [null],
    disable_concat_sequences: true,
    sequence_separator_token: 'bos',
    device: 'cpu',
    act_store_device: 'cpu',
    seed: 7,
    dtype: 'float32',
    prepend_bos: false,
    autocast: false,
    autocast_lm: false,
    compile_llm: false,
    llm_compilation_mode: null,
    compile_sae: false,
    sae_compilation_mode: null,
    train_batch_size_tokens: 256,
    adam_beta1: 0.8,
    adam_beta2: 0.99,
    lr: 0.001,
    lr_scheduler_name: 'constant',
    lr_warm_up_steps: 0,
    lr_end: 0.0001,
    lr_decay_steps: 0,
    n_restart_cycles: 1,
    dead_feature_window: 1000,
    feature_sampling_window: 2000,
    dead_feature_threshold: 1e-8,
    n_eval_batches: 10,
    eval_batch_size_prompts: null,
    logger: {
      log_to_wandb: true,
      log_activations_store_to_wandb: false,
      log_optimizer_state_to_wandb: false,
      wandb_project: 'sae_lens_training',
      wandb_id: null,
      run_name: '128-L1-5-LR-0.001-Tokens-5.120e+02',
      wandb_entity: null,
      wandb_log_frequency: 10,
      eval_every_n_wandb_logs: 100,
    },
    n_checkpoints: 0,
    checkpoint_path: 'checkpoints/abc',
    save_final_checkpoint: false,
    output_path: 'output',
    resume_from_checkpoint: null,
    verbose: true,
    model_kwargs: {},
    model_from_pretrained_kwargs: null,
    sae_lens_version: '6.18.0',
    sae_lens_training_version: '6.18.0',
    exclude_special_tokens: false,
  };
}

describe('SAELens runner config names', () => {
  it('takes SAELens names and per-SAE fields on the command line, notes the ones without effect', async () => {
    const out = path.join(tmp('names-cli'), 'run');
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/gpt2-resid.ts',
        ...small,
        ...['--model_name', MODEL_F32, '--dataset_path', dataset(), '--hook_layer', '1'],
        ...['--expansion_factor', '2', '--k', '4', '--aux_loss_coefficient', '0.25', '--adam_beta1', '0.8'],
        ...['--adam_beta2', '0.99', '--max_grad_norm', '2', '--device', 'cuda', '--log_to_wandb'],
        ...['--out', out],
      ]),
      testIo(),
    );
    expect(outcome?.status).toBe('completed');
    const config = readJson(out, 'config.json');
    expect(config).toMatchObject({ model: MODEL_F32, layer: 1, expansion_factor: 2 });
    const [sae] = await trainerConfigs(out);
    expect(sae).toMatchObject({
      d_in: 64,
      d_sae: 128,
      k: 4,
      aux_loss_coefficient: 0.25,
      adam_beta1: 0.8,
      adam_beta2: 0.99,
      max_grad_norm: 2,
      hook_name: 'blocks.1.hook_resid_pre',
    });
    const log = readFileSync(path.join(out, 'run.log'), 'utf8');
    expect(log).toContain(
      '--device (SAELens) = "cuda" has no effect in saeflow: choose the compute with --engine',
    );
    expect(log).toContain('--log_to_wandb (SAELens) = "true" has no effect in saeflow');
  });

  it('runs a SAELens config dump given as --config', async () => {
    const dir = tmp('names-dump');
    const file = path.join(dir, 'runner_cfg.json');
    writeFileSync(file, JSON.stringify(saelensDump(MODEL_F32, dataset())));
    const out = path.join(dir, 'run');
    const outcome = await runPipeline(
      parseCliArgs(['pipelines/gpt2-resid.ts', '--config', file, '--backend', 'cpu', '--out', out]),
      testIo(),
    );
    expect(outcome?.status).toBe('completed');
    const [sae] = await trainerConfigs(out);
    expect(sae).toMatchObject({
      architecture: 'topk',
      d_sae: 128,
      k: 8,
      aux_loss_coefficient: 0.5,
      adam_beta1: 0.8,
      adam_beta2: 0.99,
      lr: 0.001,
      lr_end: 0.0001,
      seed: 7,
      training_tokens: 512,
      hook_name: 'blocks.1.hook_resid_pre',
    });
    expect(readJson(out, 'config.json')).toMatchObject({
      processing: 'none',
      context_size: 32,
      prepend_bos: false,
    });
  });

  it('refuses what saeflow does not do, naming the field and the equivalent', async () => {
    const dir = tmp('names-bad');
    const run = async (patch: Record<string, unknown>) => {
      const file = path.join(dir, `cfg-${Object.keys(patch).join('-')}.json`);
      writeFileSync(file, JSON.stringify({ ...saelensDump(MODEL_F32, 'x.jsonl'), ...patch }));
      return runPipeline(
        parseCliArgs(['pipelines/gpt2-resid.ts', '--config', file, '--out', path.join(dir, 'never')]),
        testIo(),
      );
    };
    await expect(run({ use_cached_activations: true })).rejects.toThrow(
      /use_cached_activations \(SAELens\) = true is not supported: .*--activations DIR/,
    );
    await expect(run({ n_checkpoints: 4 })).rejects.toThrow(/n_checkpoints .*--checkpoint_every_tokens/);
    await expect(run({ model_name: 'gpt2', sae: undefined, hook_head_index: 3 })).rejects.toThrow(
      /hook_head_index .*attn\.hook_z/,
    );
    await expect(
      runPipeline(
        parseCliArgs([
          'pipelines/gpt2-resid.ts',
          '--model',
          'tiny-gpt2',
          '--model_name',
          'gpt2',
          '--out',
          dir,
        ]),
        testIo(),
      ),
    ).rejects.toThrow(/--model and --model_name .*set model, to different values/);
    await expect(
      runPipeline(
        parseCliArgs([
          'pipelines/gpt2-resid.ts',
          ...['--model', MODEL_F32, '--dataset', 'x', '--jumprelu_bandwidth', '0.1'],
          ...['--out', path.join(dir, 'never2')],
        ]),
        testIo(),
      ),
    ).rejects.toThrow(/--jumprelu_bandwidth does not apply to topk SAEs/);
    await expect(
      runPipeline(
        parseCliArgs([
          'pipelines/gpt2-transcoder.ts',
          ...['--hook_name', 'blocks.0.hook_resid_pre', '--out', path.join(dir, 'never3')],
        ]),
        testIo(),
      ),
    ).rejects.toThrow(/hook_name .*give --layer L/);
  });

  it('maps model_from_pretrained_kwargs and TransformerLens model names', () => {
    const known = new Set(['model', 'processing', 'dataset']);
    const t = translateForeignNames(
      [
        ['model_name', 'gpt2-small'],
        ['model_from_pretrained_kwargs', { center_writing_weights: true }],
      ],
      SAELENS_RUNNER_NAMES,
      known,
      'cfg.json',
      false,
    );
    expect(t.values).toEqual([
      ['model', 'gpt2'],
      ['processing', 'center_writing_weights'],
    ]);
    expect(() =>
      translateForeignNames(
        [['model_from_pretrained_kwargs', { fold_ln: true }]],
        SAELENS_RUNNER_NAMES,
        known,
        'cfg.json',
        false,
      ),
    ).toThrow(/fold_ln not supported/);
  });
});

describe('sweep SAE names', () => {
  it('names each SAE by the setting it changes and sorts them naturally', () => {
    const overrides = [{ k: 8 }, { k: 16 }, { k: 32 }];
    const drafts = overrides.map((o) => ({
      architecture: 'topk',
      hook_name: 'blocks.2.hook_resid_pre',
      ...o,
    }));
    const names = overrides.map((_, i) => sweepSaeName(drafts, overrides, i));
    expect(names).toEqual(['topk-k8', 'topk-k16', 'topk-k32']);
    expect([...names].reverse().sort(naturalCompare)).toEqual(['topk-k8', 'topk-k16', 'topk-k32']);
    const mixed = [{ architecture: 'jumprelu', l0_coefficient: 2 }, {}, {}];
    const mixedDrafts = [
      { architecture: 'jumprelu', hook_name: 'h' },
      { architecture: 'topk', hook_name: 'h' },
      { architecture: 'topk', hook_name: 'h' },
    ];
    expect(mixed.map((_, i) => sweepSaeName(mixedDrafts, mixed, i))).toEqual([
      'jumprelu-l0c2',
      'topk-1',
      'topk-2',
    ]);
    expect(sweepSaeName([drafts[0]!], [], 0)).toBe('topk-blocks.2.hook_resid_pre');
  });
});
