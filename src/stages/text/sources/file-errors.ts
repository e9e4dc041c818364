import { UserError } from '../../../pipeline/errors.js';

/** Turns the file-system errors a user can cause (missing file, a directory, no permission) into UserErrors. */
export function fileError(file: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new UserError(`file not found: ${file}`, { cause: err });
  if (code === 'EISDIR')
    return new UserError(`expected a file but found a directory: ${file}`, { cause: err });
  if (code === 'EACCES' || code === 'EPERM')
    return new UserError(`cannot read ${file}: permission denied`, { cause: err });
  return err;
}
