import { open, type FileHandle } from 'node:fs/promises';
import { UserError } from '../../../pipeline/errors.js';
import type { Document } from '../types.js';
import { fileError } from './file-errors.js';
import { chooseField, toText, toTokenArray, type FieldChoice, type FieldOptions } from './fields.js';

/**
 * JSON Lines: one JSON object per line, one document per object. Blank lines are skipped. The field is
 * `textField`/`tokensField` if given, else the first of `tokens`, `input_ids`, `text` present in the
 * first record; every later record must have it too. Read line by line, so files of any size stream.
 */
export async function* readJsonl(file: string, opts: FieldOptions = {}): AsyncGenerator<Document> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw fileError(file, err);
  }
  try {
    let choice: FieldChoice | undefined;
    let lineNo = 0;
    for await (const raw of handle.readLines({ encoding: 'utf8' })) {
      lineNo++;
      const line = lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (line.trim() === '') continue;
      const where = `${file}:${lineNo}`;
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch (err) {
        throw new UserError(`${where}: line is not valid JSON (${(err as Error).message})`, { cause: err });
      }
      if (record === null || typeof record !== 'object' || Array.isArray(record)) {
        throw new UserError(`${where}: expected a JSON object per line`);
      }
      const fields = record as Record<string, unknown>;
      choice ??= chooseField(Object.keys(fields), opts, where);
      if (!Object.hasOwn(fields, choice.name)) {
        throw new UserError(`${where}: missing field '${choice.name}'`);
      }
      const value = fields[choice.name];
      yield choice.kind === 'text'
        ? { id: where, text: toText(value, choice.name, where) }
        : { id: where, tokens: toTokenArray(value, choice.name, where) };
    }
  } finally {
    await handle.close();
  }
}
