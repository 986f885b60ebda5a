// `quorumkv snapshot restore|status`: offline tools for the snapshot files `etcdctl snapshot save`
// fetches from a quorumkv member (Maintenance.Snapshot; file layout in storage/snapshot_file.ts:
// payload, zero padding to 512 bytes, SHA-256).
//
// restore: checks the SHA-256, refuses a data dir that is not empty, writes the backend from the
// snapshot into <data-dir>/member/backend, and creates a WAL whose snapshot marker and hard state
// sit at the snapshot's applied index, so the member starts from the restored state (Raft's log
// begins at the snapshot; nothing is replayed). Member and cluster IDs are derived from the flags,
// as a new cluster's are, so the restored member is a new one-member (or --initial-cluster) cluster.
import fs from 'node:fs';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { ConfigError, parseServerFlags, splitArgv } from '../config/flags';
import { computeClusterId, computeMemberId, idToHex } from '../util/ids';
import {
  SNAPSHOT_ALIGN_BYTES,
  SNAPSHOT_SHA256_BYTES,
  SnapshotFileError,
  emptyBackendStreamFileStats,
  isEtcdDbFile,
  readBackendStreamFile,
  verifySnapshotFile,
} from '../storage/snapshot_file';
import { restoreSnapshotInto, writeRecordsInto, type SnapshotMeta } from '../storage/backend/snapshot';
import { MEMBERSHIP_NAMESPACES } from '../storage/backend/records';
import { Backend } from '../storage/backend/backend';
import { initialMembers, memberToJson } from '../server/membership';
import { encodeMetadata } from '../server/bootstrap';
import { Wal } from '../storage/wal';
import { BoltReader } from '../storage/etcddb/bolt';
import { etcdDbAsSnapshotStream, etcdDbStatus } from '../storage/etcddb/etcd_db';

const USAGE = `Usage:
  quorumkv snapshot restore <file> [--data-dir=<dir>] [--name=default] [--initial-cluster=<name>=<peer-url>,...]
                                   [--initial-cluster-token=etcd-cluster] [--initial-advertise-peer-urls=<peer-url>,...]
                                   [--skip-hash-check]
  quorumkv snapshot status <file> [-w simple|table|json]
`;

/** Entry point for `quorumkv snapshot ...`; returns the process exit code. */
export async function snapshotMain(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === 'restore') return await restoreCommand(rest);
    if (cmd === 'status') return await statusCommand(rest);
    process.stderr.write(cmd === undefined || cmd === 'help' || cmd === '--help' ? USAGE : `quorumkv snapshot: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
    return 2;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`Error: ${err.message}\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/** Splits `<file> --flag ...` (the file may come anywhere, as with etcdctl). */
function fileAndFlags(args: readonly string[], known: readonly string[], booleans: readonly string[] = []): { file: string; flags: Map<string, string> } {
  const positional: string[] = [];
  const flagArgs: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-')) {
      positional.push(a);
      continue;
    }
    flagArgs.push(a);
    const bare = !a.includes('=') && !booleans.includes(a.replace(/^--?/, ''));
    if (bare && args[i + 1] !== undefined && !args[i + 1]!.startsWith('-')) flagArgs.push(args[++i]!);
  }
  if (positional.length !== 1) throw new ConfigError(`expected exactly one snapshot file, got ${positional.length}`);
  return { file: positional[0]!, flags: splitArgv(flagArgs, new Set([...known, ...booleans]), new Set(booleans)) };
}

// --- restore --------------------------------------------------------------------------------------

const RESTORE_FLAGS = ['data-dir', 'name', 'initial-cluster', 'initial-cluster-token', 'initial-advertise-peer-urls'];

function isEmptyOrMissing(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

export interface RestoreResult {
  meta: SnapshotMeta;
  revision: number;
  memberId: bigint;
  clusterId: bigint;
  dataDir: string;
}

async function restoreCommand(args: readonly string[]): Promise<number> {
  const { file, flags } = fileAndFlags(args, RESTORE_FLAGS, ['skip-hash-check']);
  const skip = flags.get('skip-hash-check');
  flags.delete('skip-hash-check');
  if (skip !== undefined && !['true', 'false'].includes(skip)) throw new ConfigError(`invalid --skip-hash-check=${JSON.stringify(skip)}: expected true or false`);
  // The server's own flag parsing gives the same defaults (and IDs) as `quorumkv` with these flags.
  const cfg = parseServerFlags([...flags].map(([k, v]) => `--${k}=${v}`), {});
  const r = await restoreSnapshot(file, {
    skipHashCheck: skip === 'true',
    dataDir: cfg.dataDir,
    name: cfg.name,
    initialCluster: cfg.initialCluster,
    initialClusterToken: cfg.initialClusterToken,
  });
  process.stdout.write(
    `Restored snapshot ${file} into ${r.dataDir}: applied index ${r.meta.appliedIndex}, term ${r.meta.appliedTerm}, revision ${r.revision}, member ${idToHex(r.memberId)}, cluster ${idToHex(r.clusterId)}\n`,
  );
  return 0;
}

export async function restoreSnapshot(
  file: string,
  o: {
    dataDir: string;
    name: string;
    initialCluster: Map<string, string[]>;
    initialClusterToken: string;
    /** etcdctl's --skip-hash-check: an etcd database without the SHA-256 (a `member/snap/db`
     *  copied from an etcd data dir) is restored as it is. */
    skipHashCheck?: boolean;
    /** Progress over both passes (SHA-256 check, then restore): bytes done of 2 × the file body. */
    onProgress?: (doneBytes: number, totalBytes: number) => void;
  },
): Promise<RestoreResult> {
  if (!isEmptyOrMissing(o.dataDir)) throw new SnapshotFileError(`data-dir ${JSON.stringify(o.dataDir)} exists and is not empty`);
  const size = (await fs.promises.stat(file)).size;
  const progress = o.onProgress;
  const etcdDb = await isEtcdDbFile(file);
  if (etcdDb && size % SNAPSHOT_ALIGN_BYTES !== SNAPSHOT_SHA256_BYTES && !o.skipHashCheck) {
    throw new SnapshotFileError('snapshot missing hash but --skip-hash-check=false');
  }
  const body = etcdDb && o.skipHashCheck ? size : await verifySnapshotFile(file, progress && ((n) => progress(n, 2 * size)));
  const ids = [...o.initialCluster].map(([name, urls]) => ({ name, id: computeMemberId(urls, o.initialClusterToken) }));
  const memberId = ids.find((m) => m.name === o.name)!.id;
  const clusterId = computeClusterId(ids.map((m) => m.id));
  const createdDataDir = !fs.existsSync(o.dataDir);
  const memberDir = path.join(o.dataDir, 'member');
  fs.mkdirSync(memberDir, { recursive: true, mode: 0o700 });
  try {
    const backendDir = path.join(memberDir, 'backend');
    let meta: SnapshotMeta;
    let revision: number;
    if (etcdDb) {
      const db = BoltReader.open(file);
      try {
        let info: { revision: number } | undefined;
        meta = await restoreSnapshotInto(backendDir, etcdDbAsSnapshotStream(db, (i) => (info = i)));
        revision = Math.max(1, info!.revision);
        progress?.(2 * size, 2 * size);
      } finally {
        db.close();
      }
    } else {
      const stats = emptyBackendStreamFileStats();
      await writeRecordsInto(backendDir, readBackendStreamFile(file, body, stats, progress && ((n) => progress(size + n, 2 * size))));
      meta = stats.meta!;
      revision = Math.max(1, stats.currentRevision);
    }
    await dropMembership(backendDir);
    // The new cluster's membership is --initial-cluster (as etcd's restore rewrites its members
    // bucket); store it, so later membership changes apply on top of it after a restart.
    const backend = await Backend.open(backendDir);
    try {
      for (const m of initialMembers(o.initialCluster, o.initialClusterToken)) {
        backend.stageMember(m.id, Buffer.from(JSON.stringify(memberToJson(m))));
      }
      await backend.commit(meta.appliedIndex, meta.appliedTerm, true);
    } finally {
      await backend.close();
    }
    const wal = await Wal.create(path.join(memberDir, 'wal'), encodeMetadata(memberId, clusterId));
    try {
      // Raft's log starts at the snapshot: index and term of the last entry in the backend, which
      // is also the commit index (everything applied was committed). No vote yet in this term.
      if (meta.appliedIndex > 0) {
        await wal.saveSnapshot({ index: meta.appliedIndex, term: meta.appliedTerm });
        await wal.save({ term: meta.appliedTerm, vote: 0n, commit: meta.appliedIndex }, []);
      }
    } finally {
      await wal.close();
    }
    return { meta, revision, memberId, clusterId, dataDir: o.dataDir };
  } catch (err) {
    // Leave the data dir as it was (empty or missing), so the restore can simply be rerun.
    fs.rmSync(createdDataDir ? o.dataDir : memberDir, { recursive: true, force: true });
    throw err;
  }
}


/** A restore starts a new cluster: the membership comes from --initial-cluster, as etcd's restore
 *  rewrites its members bucket. */
async function dropMembership(backendDir: string): Promise<void> {
  const db = new ClassicLevel<Buffer, Buffer>(backendDir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  try {
    for (const ns of MEMBERSHIP_NAMESPACES) await db.clear({ gte: Buffer.from([ns]), lt: Buffer.from([ns + 1]) });
  } finally {
    await db.close();
  }
}

// --- status ---------------------------------------------------------------------------------------

export interface SnapshotStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

/** What `etcdctl snapshot status` shows. For an etcd database (quorumkv's snapshots, and etcd's):
 *  the same figures etcdctl computes (etcd_db.ts etcdDbStatus). For a file of an earlier quorumkv
 *  version (a backend stream): hash = CRC32-C of the payload, revision = the store's, total keys =
 *  records in the backend, total size = the file's size. */
export async function snapshotStatus(file: string): Promise<SnapshotStatus> {
  const body = await verifySnapshotFile(file);
  if (await isEtcdDbFile(file)) {
    const db = BoltReader.open(file);
    try {
      return etcdDbStatus(db);
    } finally {
      db.close();
    }
  }
  const stats = emptyBackendStreamFileStats();
  for await (const _ of readBackendStreamFile(file, body, stats)) {
    // the reader parses and checks the payload, filling in stats; the records are not needed
  }
  return { hash: stats.payloadCrc >>> 0, revision: Math.max(1, stats.currentRevision), totalKey: stats.records, totalSize: (await fs.promises.stat(file)).size };
}

async function statusCommand(args: readonly string[]): Promise<number> {
  const { file, flags } = fileAndFlags(args, ['w', 'write-out']);
  const format = flags.get('w') ?? flags.get('write-out') ?? 'simple';
  const s = await snapshotStatus(file);
  const row = [s.hash.toString(16), String(s.revision), String(s.totalKey), humanizeBytes(s.totalSize)];
  if (format === 'json') process.stdout.write(JSON.stringify(s) + '\n');
  else if (format === 'table') process.stdout.write(table(['HASH', 'REVISION', 'TOTAL KEYS', 'TOTAL SIZE'], [row]));
  else if (format === 'simple') process.stdout.write(row.join(', ') + '\n');
  else throw new ConfigError(`unknown output format ${JSON.stringify(format)} (simple, table or json)`);
  return 0;
}

/** go-humanize's Bytes (SI units), as etcdctl prints sizes: "20 kB", "1.5 MB". */
export function humanizeBytes(n: number): string {
  if (n < 10) return `${n} B`;
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  const e = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1000)));
  const val = Math.floor((n / 1000 ** e) * 10 + 0.5) / 10;
  // Go's %.0f rounds a tie to even (20.5 → "20"); toFixed rounds it up.
  const whole = val - Math.floor(val) === 0.5 ? 2 * Math.round(val / 2) : Math.round(val);
  return `${val < 10 ? val.toFixed(1) : String(whole)} ${units[e]}`;
}

/** etcdctl's table (olekukonko/tablewriter): headers centred, cells right-aligned. */
function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = '+' + widths.map((w) => '-'.repeat(w + 2)).join('+') + '+\n';
  const centre = (s: string, w: number) => {
    const left = Math.floor((w - s.length) / 2);
    return ' '.repeat(left) + s + ' '.repeat(w - s.length - left);
  };
  const head = '|' + headers.map((h, i) => ` ${centre(h, widths[i]!)} `).join('|') + '|\n';
  const body = rows.map((r) => '|' + r.map((c, i) => ` ${c.padStart(widths[i]!)} `).join('|') + '|\n').join('');
  return line + head + line + body + line;
}
