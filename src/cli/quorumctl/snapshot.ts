// quorumctl snapshot save FILE | restore FILE --data-dir DIR [...]
//
// save: streams Maintenance.Snapshot into FILE.part, checks the file the way etcd clients do (size
// n % 512 == 32, and the SHA-256 the server appends over everything before it), fsyncs it, then
// renames it to FILE and fsyncs the directory: FILE is either absent or a complete, verified
// snapshot, never a torn one.
// restore: runs `quorumkv snapshot restore` (src/cli/snapshot.ts: same flags, checks, output and
// progress bar) as a child process with this process's stdio, and exits with its exit code.
// quorumctl is a client: restoring is server work (src/server/restore.ts), which it does not
// import (test/cli/quorumctl_imports.test.ts checks that).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { SnapshotFileVerifier } from '../../storage/snapshot_file';
import { SNAPSHOT_RESTORE_FLAGS } from '../../config/flags';
import { syncDir } from '../../util/fsync_dir';
import { UsageError, type ParsedArgs } from './args';
import { CommandError, toCommandError, type Connection } from './client';
import { ProgressBar } from '../progress';

/** Flags `snapshot restore` passes on to `quorumkv snapshot restore` (the revision bump's as
 *  `--bump-revision=N`, `--mark-compacted=true|false`). */
export const RESTORE_FLAGS: readonly string[] = [...SNAPSHOT_RESTORE_FLAGS, 'bump-revision', 'mark-compacted'];

/** quorumkv's entry point: next to quorumctl.js in dist/src/cli. */
const QUORUMKV_BIN = path.join(__dirname, '..', 'quorumkv.js');

/** Runs `snapshot save|restore`; resolves with the exit code. */
export async function snapshotCommand(conn: () => Promise<Connection>, a: ParsedArgs, out: NodeJS.WritableStream): Promise<number> {
  const [sub, file, ...rest] = a.positional;
  if (file === undefined || rest.length > 0) throw new UsageError('usage: quorumctl snapshot save FILE | snapshot restore FILE --data-dir DIR [--name N] [--initial-cluster ...]');
  if (sub === 'save') {
    const c = await conn();
    try {
      await saveSnapshot(c, file);
    } finally {
      c.close();
    }
    out.write(`Snapshot saved at ${file}\n`);
    return 0;
  }
  if (sub === 'restore') return restoreCommand(file, a);
  throw new UsageError('usage: quorumctl snapshot save FILE | snapshot restore FILE --data-dir DIR');
}

interface SnapshotResponsePb {
  remaining_bytes: string;
  blob: Buffer;
}

export async function saveSnapshot(c: Connection, file: string): Promise<number> {
  const part = `${file}.part`;
  const fh = await fs.promises.open(part, 'w', 0o600);
  const bar = new ProgressBar({ label: 'snapshot save' });
  let ok = false;
  try {
    // No deadline: a large backend takes as long as it takes; the server ends the stream.
    const call = c.client('Maintenance')['Snapshot']!({}) as grpc.ClientReadableStream<SnapshotResponsePb>;
    const verifier = new SnapshotFileVerifier();
    let done = 0;
    let total = 0;
    try {
      for await (const r of call as AsyncIterable<SnapshotResponsePb>) {
        const blob = r.blob;
        if (total === 0) total = blob.length + Number(r.remaining_bytes);
        verifier.push(blob);
        let off = 0;
        while (off < blob.length) off += (await fh.write(blob, off, blob.length - off)).bytesWritten;
        done += blob.length;
        bar.update(done, total);
      }
    } catch (err) {
      throw toCommandError(err);
    }
    if (done === 0) throw new CommandError('snapshot: the server sent no data');
    verifier.finish(); // etcd's checks: size n % 512 == 32, and the SHA-256 of what came before it
    await fh.sync();
    bar.update(done, done);
    bar.finish();
    ok = true;
    return done;
  } finally {
    if (!ok) bar.abort();
    await fh.close();
    if (ok) {
      await fs.promises.rename(part, file);
      await syncDir(path.dirname(path.resolve(file)));
    } else {
      await fs.promises.rm(part, { force: true });
    }
  }
}

function restoreCommand(file: string, a: ParsedArgs): Promise<number> {
  if (!a.flags.has('data-dir')) throw new UsageError('usage: quorumctl snapshot restore FILE --data-dir DIR [--name N] [--initial-cluster ...] [--initial-cluster-token T] [--initial-advertise-peer-urls U]');
  const flags = RESTORE_FLAGS.filter((f) => a.flags.has(f)).map((f) => `--${f}=${a.flags.get(f)}`);
  return runQuorumkv(['snapshot', 'restore', file, ...flags]);
}

/** Runs quorumkv with this process's stdin, stdout and stderr; resolves with its exit code (for a
 *  child killed by a signal, 128 + the signal's number, as a shell reports it). */
function runQuorumkv(args: string[]): Promise<number> {
  if (!fs.existsSync(QUORUMKV_BIN)) throw new CommandError(`snapshot restore runs quorumkv, which is not at ${QUORUMKV_BIN}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [QUORUMKV_BIN, ...args], { stdio: 'inherit' });
    child.on('error', (err) => reject(new CommandError(`cannot run ${QUORUMKV_BIN}: ${err.message}`)));
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
  });
}
