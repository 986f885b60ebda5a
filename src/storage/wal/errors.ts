// WAL errors. Both are fatal to the member: they are not retried, and their messages say what an
// operator can do about them.

export class WalError extends Error {
  override name = 'WalError';
}

/**
 * Recovery found damage that is not a torn tail: data that was once synced is gone or wrong, so
 * replaying the log would silently lose acknowledged writes. The member must not start.
 */
export class WalCorruptionError extends WalError {
  override name = 'WalCorruptionError';
  constructor(
    /** Segment file name (no directory). */
    readonly file: string,
    /** Byte offset in that file of the first damaged record. */
    readonly offset: number,
    /** What is wrong there, e.g. "checksum mismatch". */
    readonly reason: string,
  ) {
    super(
      `wal: ${reason} in ${file} at offset ${offset}: refusing to start (the log is corrupted before its tail; ` +
        `restore this member from a snapshot or remove it and re-add it)`,
    );
  }
}

/**
 * A write, fdatasync or segment rotation failed. What reached the disk is unknown, so the WAL
 * refuses every later write (fsync errors are not retryable: the kernel may already have dropped the
 * dirty pages). The member stops acknowledging writes; a restart's recovery repairs the tail.
 */
export class WalFailedError extends WalError {
  override name = 'WalFailedError';
  constructor(cause: unknown) {
    super(
      `wal: a previous write or fdatasync failed (${cause instanceof Error ? cause.message : String(cause)}); ` +
        `refusing further writes: restart the member to recover the log`,
      { cause },
    );
  }
}

/** The errno code (EIO, ENOSPC, ...) behind a WAL error, following `cause` links; undefined if
 *  there is none (e.g. a short write). */
export function walErrnoCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** True if the WAL failed only for lack of space (ENOSPC, EDQUOT): what is on disk is intact, and
 *  the member may keep serving reads until an operator frees space and restarts it. Every other
 *  failure (EIO above all) leaves the file's state unknown. */
export function isWalOutOfSpace(err: unknown): boolean {
  const code = walErrnoCode(err);
  return code === 'ENOSPC' || code === 'EDQUOT';
}
