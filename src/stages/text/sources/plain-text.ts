import { readFile } from 'node:fs/promises';
import { UserError } from '../../../pipeline/errors.js';
import type { TextDocument } from '../types.js';
import { fileError } from './file-errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A `.txt` file as one document. The text must be UTF-8 (a leading byte-order mark is dropped). */
export async function* readPlainText(file: string): AsyncGenerator<TextDocument> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw fileError(file, err);
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (err) {
    throw new UserError(`${file}: not valid UTF-8 text`, { cause: err });
  }
  yield { id: file, text };
}
