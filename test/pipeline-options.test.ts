import { describe, expect, it } from 'vitest';
import { UserError } from '../src/pipeline/errors.js';
import { opt } from '../src/pipeline/options.js';
import {
  applyCliOverrides,
  applyJsonConfig,
  defaultsOf,
  formatOptionsHelp,
} from '../src/pipeline/resolve-config.js';

const schema = {
  context_size: opt.int(128, 'tokens per window', { min: 2 }),
  lr: opt.number(3e-4, 'learning rate', { min: 0 }),
  dataset: opt.string('moby-dick', 'dataset'),
  architecture: opt.choice(['standard', 'topk'], 'standard', 'SAE architecture'),
  hooks: opt.list(['blocks.0.hook_resid_pre'], 'hooks'),
  max_tokens: opt.nullable(opt.int(0, 'token limit', { min: 0 }), null),
  prepend_bos: opt.boolean(true, 'prepend BOS'),
  sae: { d_sae: opt.int(512, 'width', { min: 1 }), k: opt.int(32, 'top k', { min: 1 }) },
};

describe('pipeline options', () => {
  it('resolves defaults into a nested typed config', () => {
    const cfg = defaultsOf(schema);
    expect(cfg).toEqual({
      context_size: 128,
      lr: 3e-4,
      dataset: 'moby-dick',
      architecture: 'standard',
      hooks: ['blocks.0.hook_resid_pre'],
      max_tokens: null,
      prepend_bos: true,
      sae: { d_sae: 512, k: 32 },
    });
  });

  it('applies command-line overrides, dotted keys included', () => {
    const cfg = applyCliOverrides(
      schema,
      defaultsOf(schema),
      [
        ['context_size', '64'],
        ['lr', '1e-3'],
        ['hooks', 'a,b'],
        ['max_tokens', '1_000_000'],
        ['prepend_bos', 'false'],
        ['sae.k', '8'],
        ['architecture', 'topk'],
      ],
      'test',
    );
    expect(cfg.context_size).toBe(64);
    expect(cfg.lr).toBe(1e-3);
    expect(cfg.hooks).toEqual(['a', 'b']);
    expect(cfg.max_tokens).toBe(1_000_000);
    expect(cfg.prepend_bos).toBe(false);
    expect(cfg.sae).toEqual({ d_sae: 512, k: 8 });
    expect(cfg.architecture).toBe('topk');
  });

  it('names the option and suggests near names for an unknown option', () => {
    expect(() => applyCliOverrides(schema, defaultsOf(schema), [['contxt_size', '3']], 'test')).toThrow(
      /Unknown option --contxt_size.*Did you mean --context_size/,
    );
    expect(() => applyCliOverrides(schema, defaultsOf(schema), [['d_sae', '3']], 'test')).toThrow(
      /--sae\.d_sae/,
    );
  });

  it('rejects ill-typed and out-of-range values with the option name', () => {
    const bad: Array<[string, string, RegExp]> = [
      ['context_size', 'abc', /--context_size: expected integer >= 2, got "abc"/],
      ['context_size', '1', /--context_size: expected integer >= 2/],
      ['context_size', '2.5', /integer/],
      ['architecture', 'gated', /--architecture: expected one of standard\|topk/],
      ['prepend_bos', 'maybe', /--prepend_bos: expected true or false/],
      ['lr', '-1', /--lr/],
    ];
    for (const [key, raw, message] of bad) {
      const run = () => applyCliOverrides(schema, defaultsOf(schema), [[key, raw]], 'test');
      expect(run).toThrow(UserError);
      expect(run).toThrow(message);
    }
  });

  it('reads JSON configs, nested or dotted, and names the file on errors', () => {
    const cfg = applyJsonConfig(
      schema,
      defaultsOf(schema),
      { sae: { d_sae: 64 }, 'sae.k': 4, lr: 0.01 },
      'c.json',
    );
    expect(cfg.sae).toEqual({ d_sae: 64, k: 4 });
    expect(cfg.lr).toBe(0.01);
    expect(() => applyJsonConfig(schema, defaultsOf(schema), { context_size: '64' }, 'c.json')).toThrow(
      /c\.json: option "context_size": expected integer >= 2, got "64"/,
    );
    expect(() => applyJsonConfig(schema, defaultsOf(schema), { sae: { width: 3 } }, 'c.json')).toThrow(
      /Unknown option --sae\.width in c\.json/,
    );
    expect(() => applyJsonConfig(schema, defaultsOf(schema), [1, 2], 'c.json')).toThrow(
      /c\.json: expected a JSON object/,
    );
  });

  it('lists every option with its type, doc and default in the help', () => {
    const help = formatOptionsHelp(schema);
    expect(help).toMatch(/--context_size <integer >= 2>\s+tokens per window \(default: 128\)/);
    expect(help).toMatch(/--sae\.k <integer >= 1>\s+top k \(default: 32\)/);
    expect(help).toMatch(/--max_tokens <integer >= 0 or none>.*\(default: none\)/);
    expect(help).toMatch(/--hooks <comma-separated list>.*\(default: blocks\.0\.hook_resid_pre\)/);
  });

  it('refuses a default that breaks its own constraint (a bug in the pipeline file)', () => {
    expect(() => opt.int(1, 'x', { min: 2 })).toThrow(/expected integer >= 2/);
  });
});
