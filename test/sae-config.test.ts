import { describe, expect, it } from 'vitest';
import { UserError } from '../src/pipeline/errors.js';
import {
  resolveSaeTrainingConfig,
  resolveSaeTrainingConfigs,
  totalTrainingSteps,
} from '../src/sae/config.js';

const req = { d_in: 16, d_sae: 64, hook_name: 'blocks.0.hook_resid_pre' };

describe('SaeTrainingConfig', () => {
  it('fills SAELens defaults', () => {
    const cfg = resolveSaeTrainingConfig(req);
    expect(cfg).toMatchObject({
      architecture: 'standard',
      name: 'standard-blocks.0.hook_resid_pre-64',
      apply_b_dec_to_input: true,
      decoder_init_norm: 0.1,
      l1_coefficient: 1,
      lr: 3e-4,
      lr_scheduler_name: 'constant',
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      train_batch_size_tokens: 4096,
      training_tokens: 2_000_000,
      dead_feature_window: 1000,
      feature_sampling_window: 2000,
      normalize_activations: 'none',
      b_dec_init_method: 'zeros',
      d_out: null,
    });
    expect(totalTrainingSteps(cfg)).toBe(488);
    expect(resolveSaeTrainingConfig({ ...req, d_sae: 256, architecture: 'topk' })).toMatchObject({
      k: 100,
      rescale_acts_by_decoder_norm: true,
      aux_loss_coefficient: 1,
    });
    expect(resolveSaeTrainingConfig({ ...req, architecture: 'jumprelu' })).toMatchObject({
      jumprelu_bandwidth: 0.05,
      jumprelu_init_threshold: 0.01,
      l0_coefficient: 1,
    });
    // A transcoder does not subtract its (output-side) b_dec from the input by default.
    expect(resolveSaeTrainingConfig({ ...req, d_out: 8, hook_name_out: 'x' }).apply_b_dec_to_input).toBe(
      false,
    );
  });

  it('round-trips: a resolved config resolves to itself', () => {
    for (const architecture of ['standard', 'topk', 'batchtopk', 'jumprelu', 'gated'] as const) {
      const cfg = resolveSaeTrainingConfig({
        ...req,
        architecture,
        k: architecture.includes('topk') ? 8 : undefined,
      });
      expect(resolveSaeTrainingConfig(JSON.parse(JSON.stringify(cfg)))).toEqual(cfg);
    }
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['unknown option', { ...req, l1_coeff: 1 }, /sae\.l1_coeff: unknown option/],
    ['missing d_in', { d_sae: 4, hook_name: 'h' }, /sae\.d_in: is required/],
    ['wrong type', { ...req, lr: '0.1' }, /sae\.lr: must be a number > 0, got "0.1"/],
    ['bad architecture', { ...req, architecture: 'relu' }, /sae\.architecture: must be one of 'standard'/],
    [
      'option of another architecture',
      { ...req, k: 32 },
      /sae\.k: does not apply to architecture 'standard' \(only to topk, batchtopk, matryoshka_batchtopk\)/,
    ],
    [
      'matryoshka widths out of order',
      { ...req, architecture: 'matryoshka_batchtopk', k: 4, matryoshka_widths: [32, 16] },
      /sae\.matryoshka_widths: must be strictly increasing/,
    ],
    [
      'matryoshka width above d_sae',
      { ...req, architecture: 'matryoshka_batchtopk', k: 4, matryoshka_widths: [128] },
      /sae\.matryoshka_widths: widths must be integers in 1\.\.d_sae \(64\), got 128/,
    ],
    [
      'matryoshka widths not integers',
      { ...req, architecture: 'matryoshka_batchtopk', k: 4, matryoshka_widths: [1.5] },
      /sae\.matryoshka_widths: must be a list of integers/,
    ],
    [
      'unknown architecture',
      { ...req, architecture: 'sparse' },
      /sae\.architecture: must be one of 'standard'.*'matryoshka_batchtopk'/,
    ],
    ['non-integer topk k', { ...req, architecture: 'topk', k: 2.5 }, /sae\.k: must be an integer for topk/],
    ['k above d_sae', { ...req, architecture: 'topk', k: 65 }, /sae\.k: \(65\) must not exceed d_sae \(64\)/],
    [
      'b_dec on the input of a transcoder of another width',
      { ...req, d_out: 8, hook_name_out: 'x', apply_b_dec_to_input: true },
      /sae\.apply_b_dec_to_input: must be false for a transcoder whose d_out \(8\) differs from d_in \(16\)/,
    ],
    [
      'transcoder without target hook',
      { ...req, d_out: 8 },
      /sae\.hook_name_out: is required for a transcoder/,
    ],
    [
      'skip without transcoder',
      { ...req, skip_connection: true },
      /sae\.skip_connection: is only for transcoders/,
    ],
    [
      'per-token normalisation',
      { ...req, normalize_activations: 'layer_norm' },
      /sae\.normalize_activations: must be one of 'none', 'expected_average_only_in'/,
    ],
    [
      'schedule longer than training',
      { ...req, training_tokens: 4096 * 10, lr_warm_up_steps: 6, lr_decay_steps: 5 },
      /sae\.lr_decay_steps: .* exceed the 10 training steps/,
    ],
    [
      'too few tokens',
      { ...req, training_tokens: 100 },
      /sae\.training_tokens: \(100\) is less than one batch/,
    ],
    ['bad name', { ...req, name: 'a/b' }, /sae\.name: 'a\/b' must use only letters/],
  ];
  for (const [label, input, message] of bad) {
    it(`rejects ${label}`, () => {
      expect(() => resolveSaeTrainingConfig(input)).toThrow(UserError);
      expect(() => resolveSaeTrainingConfig(input)).toThrow(message);
    });
  }

  it('a trainer needs unique names and one batch size', () => {
    expect(() =>
      resolveSaeTrainingConfigs([
        { ...req, name: 'x' },
        { ...req, name: 'x' },
      ]),
    ).toThrow(/saes\[1\]\.name: 'x' is already used by saes\[0\]/);
    expect(() =>
      resolveSaeTrainingConfigs([
        { ...req, name: 'x' },
        { ...req, name: 'y', train_batch_size_tokens: 1024 },
      ]),
    ).toThrow(/saes\[1\]\.train_batch_size_tokens: 1024 differs from saes\[0\]'s 4096/);
    expect(() => resolveSaeTrainingConfigs([])).toThrow(/at least one/);
  });
});
