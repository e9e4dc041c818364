/**
 * An error caused by the user's input (a bad option, a missing or corrupt file), as opposed to a bug.
 * The CLI prints its message without a stack trace and exits non-zero.
 */
export class UserError extends Error {
  override name = 'UserError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Thrown by sources when the run was asked to stop (Ctrl-C); the runner treats it as a clean stop. */
export class StopRequested extends Error {
  override name = 'StopRequested';
  constructor() {
    super('stop requested');
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
