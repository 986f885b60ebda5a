// quorumctl snapshot save FILE | restore FILE --data-dir DIR [...]
//
// save: streams Maintenance.Snapshot into FILE.part, checks the file the way etcd clients do (size
// n % 512 == 32, and the SHA-256 the server appends over everything before it), fsyncs it, then
// renames it to FILE and fsyncs the directory: FILE is either absent or a complete, verified
// snapshot, never a torn one.
// restore: `quorumkv snapshot restore` (src/cli/snapshot.ts) with a progress bar.
import fs from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { SnapshotFileVerifier } from '../../storage/snapshot_file';
import { parseServerFlags } from '../../config/flags';
import { idToHex } from '../../util/ids';
import { restoreSnapshot } from '../snapshot';
import { UsageError, type ParsedArgs } from './args';
import { CommandError, toCommandError, type Connection } from './client';
import { ProgressBar } from './progress';

/** Flags `snapshot restore` passes on to the server's flag parser (the same ones as quorumkv's). */
export const RESTORE_FLAGS = ['data-dir', 'name', 'initial-cluster', 'initial-cluster-token', 'initial-advertise-peer-urls'];

export async function snapshotCommand(conn: () => Promise<Connection>, a: ParsedArgs, out: NodeJS.WritableStream): Promise<void> {
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
    return;
  }
  if (sub === 'restore') return restoreCommand(file, a, out);
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
      await fsyncDir(path.dirname(path.resolve(file)));
    } else {
      await fs.promises.rm(part, { force: true });
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const d = await fs.promises.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

async function restoreCommand(file: string, a: ParsedArgs, out: NodeJS.WritableStream): Promise<void> {
  const flags = RESTORE_FLAGS.filter((f) => a.flags.has(f)).map((f) => `--${f}=${a.flags.get(f)}`);
  if (!a.flags.has('data-dir')) throw new UsageError('usage: quorumctl snapshot restore FILE --data-dir DIR [--name N] [--initial-cluster ...] [--initial-cluster-token T] [--initial-advertise-peer-urls U]');
  // The server's own flag parsing gives the same defaults (and so the same IDs) as quorumkv's.
  const cfg = parseServerFlags(flags, {});
  const bar = new ProgressBar({ label: 'snapshot restore' });
  try {
    const r = await restoreSnapshot(file, {
      dataDir: cfg.dataDir,
      name: cfg.name,
      initialCluster: cfg.initialCluster,
      initialClusterToken: cfg.initialClusterToken,
      onProgress: (doneBytes, totalBytes) => bar.update(doneBytes, totalBytes),
    });
    bar.finish();
    out.write(
      `Restored snapshot ${file} into ${r.dataDir}: applied index ${r.meta.appliedIndex}, term ${r.meta.appliedTerm}, revision ${r.revision}, member ${idToHex(r.memberId)}, cluster ${idToHex(r.clusterId)}\n`,
    );
  } catch (err) {
    bar.abort();
    throw new CommandError(err instanceof Error ? err.message : String(err));
  }
}
