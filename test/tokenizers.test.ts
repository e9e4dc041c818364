import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { UserError } from '../src/pipeline/errors.js';
import { validateManifest } from '../src/stages/cache/manifest.js';
import { loadCorpus, packTokens, tokenize, type Document } from '../src/stages/text/index.js';
import { textPieces } from '../src/stages/text/sources/text-pieces.js';
import { gpt2Tokenizer, loadTokenizer, type Tokenizer } from '../src/tokenizer/index.js';

const FAMILIES = ['gemma2', 'gemma', 'llama', 'mistral', 'qwen2', 'gpt_neox'] as const;
const familyDir = (f: string) => path.join('test', 'fixtures', 'families', f);
const modelDir = (f: string) => path.join(familyDir(f), 'model');

/** reference.json of a family fixture: written by transformers/tokenizers (tools/model-fixtures). */
interface Reference {
  tokenizer_vocab_size: number;
  bos_token_id: number | null;
  eos_token_id: number | null;
  tokenizer_adds_bos: boolean;
  transformerlens_default_prepend_bos: boolean;
  reference_texts: string[];
  reference_tokens: number[][];
  tokenizer_cases: Array<{
    text: string;
    ids_with_special_tokens: number[];
    ids_without_special_tokens: number[];
  }>;
}
const reference = (f: string) =>
  JSON.parse(readFileSync(path.join(familyDir(f), 'reference.json'), 'utf8')) as Reference;

/**
 * SAELens's `get_special_token_ids` on TransformerLens's tokenizer (missing BOS and pad set to EOS), worked out
 * by hand from each fixture's special_tokens_map.json / tokenizer_config.json.
 */
const SPECIAL_IDS: Record<(typeof FAMILIES)[number], number[]> = {
  gemma2: [0, 1, 2, 3], // <pad> <eos> <bos> <unk>
  gemma: [0, 1, 2, 3],
  llama: [397, 398], // BOS, EOS (pad -> EOS)
  mistral: [0, 1, 2], // <unk> <s> </s>
  qwen2: [379], // <|endoftext|> is EOS, pad, and TransformerLens's BOS
  gpt_neox: [0], // <|endoftext|> is BOS, EOS and unk
};

const tmp = () => mkdtempSync(path.join(tmpdir(), 'saeflow-tok-'));

describe.each(FAMILIES)('the %s fixture tokenizer', (family) => {
  const ref = reference(family);
  const load = () => loadTokenizer(modelDir(family));

  it('gives exactly the ids of Hugging Face tokenizers, without and with special tokens', async () => {
    const t = await load();
    expect(ref.tokenizer_cases.length).toBe(3);
    for (const c of ref.tokenizer_cases) {
      const ids = t.encode(c.text);
      expect(ids).toBeInstanceOf(Int32Array);
      expect(Array.from(ids)).toEqual(c.ids_without_special_tokens);
      // The only special token any of these tokenizers adds is a leading BOS.
      const added = ref.tokenizer_adds_bos ? [t.bosId as number] : [];
      expect([...added, ...ids]).toEqual(c.ids_with_special_tokens);
    }
  });

  it('decodes its ids back to the text', async () => {
    const t = await load();
    for (const c of ref.tokenizer_cases) expect(t.decode(t.encode(c.text))).toBe(c.text);
    for (const text of ref.reference_texts) expect(t.decode(Int32Array.from(t.encode(text)))).toBe(text);
    expect(() => t.decode([t.vocabSize])).toThrow(RangeError);
    expect(t.decodeToken(t.vocabSize + 5)).toBe(`<${t.vocabSize + 5}>`);
  });

  it('has the BOS/EOS ids, vocabulary size and prepend_bos default of the fixture', async () => {
    const t = await load();
    expect(t.bosId).toBe(ref.bos_token_id);
    expect(t.eosId).toBe(ref.eos_token_id);
    expect(t.vocabSize).toBe(ref.tokenizer_vocab_size);
    expect(t.prependBos).toBe(ref.transformerlens_default_prepend_bos);
    expect(t.specialIds).toEqual(SPECIAL_IDS[family]);
    if (t.eosId !== null) expect(t.decodeToken(t.eosId)).toBe(t.decode([t.eosId]));
  });

  it('packs the reference texts into the reference token windows', async () => {
    const t = await load();
    const docs = ref.reference_texts.map((text) => t.encode(text));
    const batches = [
      ...packTokens(docs, { contextSize: 24, batchSize: 2, disableConcatSequences: true, tokenizer: t }),
    ];
    expect(batches).toHaveLength(1);
    const rows = [0, 1].map((r) => Array.from(batches[0]!.tokens.subarray(r * 24, (r + 1) * 24)));
    expect(rows).toEqual(ref.reference_tokens);
  });

  it('is named by the sha256 of its tokenizer.json', async () => {
    const t = await load();
    const sha = createHash('sha256')
      .update(readFileSync(path.join(modelDir(family), 'tokenizer.json')))
      .digest('hex');
    expect(t.identity).toBe(`tokenizer.json sha256:${sha}`);
    expect(t.identity).not.toBe(gpt2Tokenizer.identity);
  });

  it('gives the same ids on text pieces as on the whole text', async () => {
    const t = await load();
    expect(t.piecesKeepIds).toBe(true);
    // Punctuation before a single newline is where a cut at any whitespace would change Llama 3's and
    // Qwen2's ids (their regex keeps `.\n` together); the corpus has few of those.
    const tricky = "It ended.\nThen 42 more,\tand 'quoted' ones.\r\nA b 1 2 x\u00a0y é ü 😀 z.\n".repeat(20);
    const text = `${tricky}${loadCorpus('moby-dick')
      .slice(0, 8)
      .map((d) => d.text)
      .join('\n\n')}`;
    const pieces: string[] = [];
    for await (const p of textPieces([text], 256)) pieces.push(p);
    expect(pieces.length).toBeGreaterThan(text.length / 512);
    const joined = pieces.flatMap((p) => Array.from(t.encode(p)));
    expect(joined).toEqual(Array.from(t.encode(text)));
  }, 60_000);
});

describe('GPT-2 models keep GPT-2 BPE', () => {
  it('the embedded model and the tiny fixture get gpt-tokenizer r50k, unchanged', async () => {
    for (const dir of ['models/tiny-gpt2', 'test/fixtures/gpt2-tiny/model']) {
      expect(await loadTokenizer(dir)).toBe(gpt2Tokenizer);
    }
    const fixture = JSON.parse(readFileSync('test/fixtures/text/gpt2-ids.json', 'utf8')) as {
      cases: Record<string, { text: string; ids: number[] }>;
    };
    for (const { text, ids } of Object.values(fixture.cases)) {
      expect(Array.from(gpt2Tokenizer.encode(text))).toEqual(ids);
    }
    expect(gpt2Tokenizer).toMatchObject({
      identity: 'gpt2',
      bosId: 50256,
      eosId: 50256,
      vocabSize: 50257,
      prependBos: true,
      specialIds: [50256],
    });
    expect(gpt2Tokenizer.decodeToken(50256)).toBe('<|endoftext|>');
    expect(gpt2Tokenizer.decodeToken(50257)).toBe('<50257>');
  });

  it("a GPT-2 folder's tokenizer.json is ignored for GPT-2's vocabulary and used for another", async () => {
    const dir = tmp();
    cpSync('models/tiny-gpt2/config.json', path.join(dir, 'config.json'));
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
      cpSync(path.join(modelDir('gpt_neox'), f), path.join(dir, f));
    }
    expect(await loadTokenizer(dir)).toBe(gpt2Tokenizer);
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, vocab_size: 384 }));
    const own = await loadTokenizer(dir);
    expect(own).not.toBe(gpt2Tokenizer);
    expect(own.vocabSize).toBe(378);
    // GPT-2's family default, not GPT-NeoX's tokenizer's.
    expect(own.prependBos).toBe(true);
  });
});

/** A copy of a family's model folder with some files replaced, for the error cases. */
function variant(family: string, files: Record<string, unknown>): string {
  const dir = tmp();
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    cpSync(path.join(modelDir(family), f), path.join(dir, f));
  }
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

const json = (family: string, file: string) =>
  JSON.parse(readFileSync(path.join(modelDir(family), file), 'utf8')) as Record<string, unknown>;

describe('loadTokenizer errors name the file and the field', () => {
  async function rejection(dir: string): Promise<UserError> {
    const err = await loadTokenizer(dir).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    return err as UserError;
  }

  it('a non-GPT-2 folder without tokenizer.json', async () => {
    const dir = tmp();
    cpSync(path.join(modelDir('llama'), 'config.json'), path.join(dir, 'config.json'));
    expect((await rejection(dir)).message).toMatch(/lacks tokenizer\.json.*llama/);
  });

  it('a special token that is not a string, or not a token', async () => {
    const tc = json('mistral', 'tokenizer_config.json');
    const stm = json('mistral', 'special_tokens_map.json');
    const { bos_token: _b, ...stmWithoutBos } = stm;
    let err = await rejection(
      variant('mistral', {
        'special_tokens_map.json': stmWithoutBos,
        'tokenizer_config.json': { ...tc, bos_token: 7 },
      }),
    );
    expect(err.message).toMatch(/tokenizer_config\.json: bos_token must be a token string/);
    err = await rejection(variant('mistral', { 'special_tokens_map.json': { ...stm, eos_token: '<nope>' } }));
    expect(err.message).toMatch(
      /special_tokens_map\.json: eos_token "<nope>" is not a token of the tokenizer/,
    );
  });

  it("config.json's ids are the fallback, and checked", async () => {
    const { eos_token: _e, ...tc } = json('llama', 'tokenizer_config.json');
    const { eos_token: _e2, ...stm } = json('llama', 'special_tokens_map.json');
    const config = json('llama', 'config.json');
    const t = await loadTokenizer(
      variant('llama', {
        'tokenizer_config.json': tc,
        'special_tokens_map.json': stm,
        'config.json': { ...config, eos_token_id: [399, 398] },
      }),
    );
    expect(t.eosId).toBe(399);
    const err = await rejection(
      variant('llama', {
        'tokenizer_config.json': tc,
        'special_tokens_map.json': stm,
        'config.json': { ...config, eos_token_id: 4000 },
      }),
    );
    expect(err.message).toMatch(/config\.json: eos_token_id must be a token id in \[0, 400\)/);
  });

  it('invalid JSON and a missing model_type', async () => {
    expect((await rejection(variant('qwen2', { 'tokenizer.json': '{ nope' }))).message).toMatch(
      /tokenizer\.json: invalid JSON/,
    );
    const { model_type: _m, ...config } = json('qwen2', 'config.json');
    expect((await rejection(variant('qwen2', { 'config.json': config }))).message).toMatch(
      /config\.json: model_type must be a string/,
    );
  });
});

describe('tokenizers whose ids depend on where text is cut', () => {
  it('a normalizer that rewrites spaces makes the tokenize stage encode documents whole', async () => {
    const tj = json('gemma2', 'tokenizer.json');
    const dir = variant('gemma2', {
      'tokenizer.json': { ...tj, normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '_' } },
    });
    const t = await loadTokenizer(dir);
    expect(t.piecesKeepIds).toBe(false);
    const pieces: Document[] = [
      { id: 'a', text: 'first part ', more: true },
      { id: 'a', text: 'second part', continues: true },
      { id: 'b', text: 'another document' },
    ];
    const out = await lastValueFrom(from(pieces).pipe(tokenize(t), toArray()));
    expect(out).toEqual([
      { id: 'a', tokens: t.encode('first part second part') },
      { id: 'b', tokens: t.encode('another document') },
    ]);
  });

  it('with piece-safe tokenizers each piece is encoded as it comes', async () => {
    const t = await loadTokenizer(modelDir('llama'));
    const pieces: Document[] = [
      { id: 'a', text: 'first part', more: true },
      { id: 'a', text: ' second part', continues: true },
    ];
    const out = await lastValueFrom(from(pieces).pipe(tokenize(t), toArray()));
    expect(out.map((d) => d.continues ?? false)).toEqual([false, true]);
    expect(out.flatMap((d) => Array.from(d.tokens))).toEqual(Array.from(t.encode('first part second part')));
  });
});

describe("the piece boundary rule against Llama 3's pre-tokenizer regex", () => {
  it('keeps ids where a cut at any whitespace would split a `.\\n` token', async () => {
    // The fixture's 400-token vocabulary has no `.\n` token, so give it one: then the regex's
    // `[^\s\p{L}\p{N}]+[\r\n]*` alternative decides the ids.
    const tj = json('llama', 'tokenizer.json') as {
      model: { vocab: Record<string, number>; merges: string[][] };
    };
    const model = {
      ...tj.model,
      vocab: { ...tj.model.vocab, '.Ċ': 400 },
      merges: [['.', 'Ċ'], ...tj.model.merges],
    };
    const t = await loadTokenizer(variant('llama', { 'tokenizer.json': { ...tj, model } }));
    const text = 'It ended.\nThen more.\nAnd the end.\n'.repeat(10);
    const whole = Array.from(t.encode(text));
    expect(whole.filter((id) => id === 400)).toHaveLength(30);
    // Cut before each newline (what the old rule allowed), ids change ...
    const atNewlines = text.split(/(?=\n)/);
    expect(atNewlines.flatMap((p) => Array.from(t.encode(p)))).not.toEqual(whole);
    // ... but textPieces' cuts keep them, and the load-time probe agrees.
    const pieces: string[] = [];
    for await (const p of textPieces([text], 8)) pieces.push(p);
    expect(pieces.length).toBeGreaterThan(20);
    expect(pieces.flatMap((p) => Array.from(t.encode(p)))).toEqual(whole);
    expect(t.piecesKeepIds).toBe(true);
  });
});

describe('packing with tokenizers that lack BOS', () => {
  const noSpecials: Pick<Tokenizer, 'bosId' | 'eosId' | 'padId' | 'prependBos'> = {
    bosId: null,
    eosId: null,
    padId: null,
    prependBos: false,
  };

  it("Qwen2: no BOS by default, and TransformerLens's BOS (its EOS) between documents", async () => {
    const t = await loadTokenizer(modelDir('qwen2'));
    const [batch] = [
      ...packTokens(
        [
          [5, 6],
          [7, 8, 9],
        ],
        { contextSize: 6, batchSize: 1, tokenizer: t },
      ),
    ];
    expect(Array.from(batch!.tokens)).toEqual([5, 6, 379, 7, 8, 9]);
    const [withBos] = [
      ...packTokens([[5, 6, 7, 8, 9]], { contextSize: 4, batchSize: 1, tokenizer: t, prependBos: true }),
    ];
    expect(Array.from(withBos!.tokens)).toEqual([379, 5, 6, 7]);
  });

  it('no BOS nor EOS at all: fine without prepend_bos, a UserError with it', () => {
    const [batch] = [
      ...packTokens(
        [
          [5, 6],
          [7, 8],
        ],
        { contextSize: 4, batchSize: 1, tokenizer: noSpecials },
      ),
    ];
    expect(Array.from(batch!.tokens)).toEqual([5, 6, 7, 8]);
    expect(() => [
      ...packTokens([[5]], { contextSize: 4, batchSize: 1, tokenizer: noSpecials, prependBos: true }),
    ]).toThrow(/neither a BOS nor an EOS/);
    expect(() => [
      ...packTokens([[5]], {
        contextSize: 4,
        batchSize: 1,
        tokenizer: noSpecials,
        sequenceSeparatorToken: 'eos',
      }),
    ]).toThrow(/no EOS token/);
  });

  it('Pythia prepends its <|endoftext|> (id 0) although its tokenizer adds nothing', async () => {
    const t = await loadTokenizer(modelDir('gpt_neox'));
    const [batch] = [...packTokens([[5, 6, 7, 8]], { contextSize: 3, batchSize: 1, tokenizer: t })];
    expect(Array.from(batch!.tokens)).toEqual([0, 5, 6]);
  });
});

describe('cache manifests record the special ids', () => {
  const manifest = {
    format: 'saeflow-activation-cache',
    format_version: 1,
    saeflow_version: '0.1.0',
    model: 'tiny-gpt2',
    hooks: [{ name: 'blocks.0.hook_resid_pre', d: 4 }],
    dtype: 'float32',
    context_size: 8,
    prepend_bos: true,
    dataset: 'moby-dick',
    tokenizer: 'gpt2',
    compression: 'snappy',
    rows_per_shard: 16,
    rows_per_row_group: 16,
    has_ids: true,
    columns: [],
    total_tokens: 0,
    complete: true,
    shards: [],
  };

  it('a manifest from before the field reads as null (GPT-2 is assumed), a list is kept', () => {
    expect(validateManifest(manifest, 'm.json').special_token_ids).toBeNull();
    expect(
      validateManifest({ ...manifest, special_token_ids: [0, 1, 2] }, 'm.json').special_token_ids,
    ).toEqual([0, 1, 2]);
  });

  it('anything else is a UserError naming the field', () => {
    for (const bad of [[-1], ['a'], 3]) {
      expect(() => validateManifest({ ...manifest, special_token_ids: bad }, 'm.json')).toThrow(
        /m\.json: field special_token_ids must be a list of non-negative integers or null/,
      );
    }
  });
});
