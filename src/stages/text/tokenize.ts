import { map, Observable } from 'rxjs';
import { defineStage, type Stage } from '../../pipeline/stage.js';
import { gpt2Tokenizer, type Tokenizer } from '../../tokenizer/index.js';
import { isTokenDocument, type Document, type TextDocument, type TokenDocument } from './types.js';

export {
  GPT2_BOS_ID,
  GPT2_END_OF_TEXT,
  GPT2_EOS_ID,
  GPT2_VOCAB_SIZE,
  decodeGpt2,
  encodeGpt2,
} from '../../tokenizer/index.js';

/**
 * Stage: text documents -> token documents (no BOS added: packing decides where BOS goes), with GPT-2's BPE
 * unless another tokenizer is given. Documents that are already tokenized pass through unchanged.
 *
 * A long document arrives in pieces (sources/text-pieces.ts). They are encoded one by one when the tokenizer
 * gives the same ids that way (`piecesKeepIds`); otherwise a document's pieces are joined and encoded
 * whole, which keeps the ids exact at the cost of holding that document's text in memory.
 */
export function tokenize(tokenizer: Tokenizer = gpt2Tokenizer): Stage<Document, TokenDocument> {
  const encode = (doc: TextDocument): TokenDocument => {
    const { text, ...rest } = doc;
    return { ...rest, tokens: tokenizer.encode(text) };
  };
  if (tokenizer.piecesKeepIds) {
    return defineStage(
      'tokenize',
      map((doc: Document): TokenDocument => (isTokenDocument(doc) ? doc : encode(doc))),
    );
  }
  return defineStage(
    'tokenize',
    (source) =>
      new Observable<TokenDocument>((subscriber) => {
        /** The pieces of the current document so far; its first piece's fields stand for the whole. */
        let held: { id: string; texts: string[] } | null = null;
        const flush = () => {
          if (held === null) return;
          const whole = { id: held.id, text: held.texts.join('') };
          held = null;
          subscriber.next(encode(whole));
        };
        const sub = source.subscribe({
          next: (doc) => {
            try {
              if (isTokenDocument(doc)) {
                flush();
                subscriber.next(doc);
                return;
              }
              if (!doc.continues) flush();
              if (!doc.continues && !doc.more) {
                subscriber.next(encode(doc));
                return;
              }
              held ??= { id: doc.id, texts: [] };
              held.texts.push(doc.text);
              if (!doc.more) flush();
            } catch (err) {
              subscriber.error(err);
            }
          },
          error: (err) => subscriber.error(err),
          // A run stopped inside a document still gets the part that was read, as with piece-wise encoding.
          complete: () => {
            try {
              flush();
              subscriber.complete();
            } catch (err) {
              subscriber.error(err);
            }
          },
        });
        return () => sub.unsubscribe();
      }),
  );
}
