import { open, type FileHandle } from 'node:fs/promises';
import { UserError } from '../../../pipeline/errors.js';
import type { TextDocument } from '../types.js';
import { fileError } from './file-errors.js';
import { textPieces } from './text-pieces.js';

const READ_BYTES = 64 * 1024;

/** The file's text in chunks as read, UTF-8 checked as it goes (a leading byte-order mark is dropped). */
async function* utf8Chunks(handle: FileHandle, file: string): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const bytes = new Uint8Array(READ_BYTES);
  let offset = 0;
  for (;;) {
    const { bytesRead } = await handle.read(bytes, 0, READ_BYTES, offset);
    offset += bytesRead;
    let text: string;
    try {
      text = decoder.decode(bytes.subarray(0, bytesRead), { stream: bytesRead > 0 });
    } catch (err) {
      throw new UserError(`${file}: not valid UTF-8 text (near byte ${offset - bytesRead})`, { cause: err });
    }
    if (text.length > 0) yield text;
    if (bytesRead === 0) return;
  }
}

/**
 * A `.txt` file as one document, read in pieces (see text-pieces.ts): the first piece has `more` set
 * when others follow, and those have `continues` set. The text must be UTF-8.
 */
export async function* readPlainText(file: string): AsyncGenerator<TextDocument> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw fileError(file, err);
  }
  try {
    let previous: string | null = null;
    let index = 0;
    for await (const piece of textPieces(utf8Chunks(handle, file))) {
      if (previous !== null) yield makePiece(file, previous, index++, true);
      previous = piece;
    }
    yield makePiece(file, previous ?? '', index, false);
  } finally {
    await handle.close();
  }
}

function makePiece(file: string, text: string, index: number, more: boolean): TextDocument {
  return {
    id: file,
    text,
    ...(index > 0 ? { continues: true } : {}),
    ...(more ? { more: true } : {}),
  };
}
