export type { Document, TextDocument, TokenBatch, TokenDocument } from './types.js';
export { isTokenDocument } from './types.js';
export {
  GPT2_BOS_ID,
  GPT2_END_OF_TEXT,
  GPT2_EOS_ID,
  GPT2_VOCAB_SIZE,
  decodeGpt2,
  encodeGpt2,
  tokenize,
} from './tokenize.js';
export { TokenPacker, pack, packTokens, resolvePackOptions } from './pack.js';
export type { PackOptions, SpecialToken } from './pack.js';
export { bufferedShuffle, mulberry32, randomInt, shuffleInPlace } from '../../util/random.js';
export type { Random } from '../../util/random.js';
export { EMBEDDED_CORPORA, isCorpusName, loadCorpus } from './sources/corpora.js';
export type { CorpusName } from './sources/corpora.js';
export { describeDataset, formatOf, resolveDataset } from './sources/dataset.js';
export type { DatasetDescription, FileFormat } from './sources/dataset.js';
export { documentSource, readDocuments } from './sources/documents.js';
export type { ReadDocumentsOptions } from './sources/documents.js';
export { chooseField } from './sources/fields.js';
export type { FieldChoice, FieldOptions } from './sources/fields.js';
export { readJsonl } from './sources/jsonl.js';
export { openParquet, parquetColumnNames, readParquet } from './sources/parquet.js';
export { readPlainText } from './sources/plain-text.js';
export { windowRange } from './window-range.js';
