/** A document of raw text, as read from a dataset. */
export interface TextDocument {
  /** Where the document came from (`file`, `file:line`, `file#row`, `corpus/n`), for logs and errors. */
  id: string;
  text: string;
}

/** A document that is already a sequence of token ids (pre-tokenized data, or the output of `tokenize`). */
export interface TokenDocument {
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
