/**
 * How a long document is split into pieces that are read and tokenized one at a time (see
 * sources/text-pieces.ts): the first piece has `more`, every later one `continues`, the last lacks `more`.
 * Packing joins the pieces as one document; a document in one piece has neither flag.
 */
export interface DocumentPiece {
  /** This piece continues the document of the previous one (no separator between them). */
  continues?: boolean;
  /** More pieces of this document follow. */
  more?: boolean;
}

/** A document of raw text, as read from a dataset. */
export interface TextDocument extends DocumentPiece {
  /** Where the document came from (`file`, `file:line`, `file#row`, `corpus/n`), for logs and errors. */
  id: string;
  text: string;
}

/** A document that is already a sequence of token ids (pre-tokenized data, or the output of `tokenize`). */
export interface TokenDocument extends DocumentPiece {
  id: string;
  tokens: Int32Array;
}

export type Document = TextDocument | TokenDocument;

/**
 * A batch of context windows ready for the model.
 * `tokens` is row-major [batchSize, contextSize]; `seqIds[r]` is the global index of row r's window
 * within the run (0, 1, 2, ... in emission order), so activations can be traced back to their window.
 */
export interface TokenBatch {
  tokens: Int32Array;
  batchSize: number;
  contextSize: number;
  seqIds: Int32Array;
}

export function isTokenDocument(doc: Document): doc is TokenDocument {
  return (doc as TokenDocument).tokens !== undefined;
}
