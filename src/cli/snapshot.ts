// `quorumkv snapshot restore|status`: argv and output of the offline tools for the snapshot files
// `etcdctl snapshot save` fetches (layout: storage/snapshot_file.ts). The work itself is
// server/restore.ts: restore writes a data dir a member starts from; status prints what `etcdctl
// snapshot status` prints. restore draws a progress bar on stderr (src/cli/progress.ts: redrawn on
// a terminal, a plain line every 5 s otherwise); quorumctl's `snapshot restore` runs this command.
import { ConfigError, SNAPSHOT_RESTORE_FLAGS, parseServerFlags, splitArgv } from '../config/flags';
import { idToHex } from '../util/ids';
import { restoreSnapshot, snapshotStatus } from '../server/restore';
import { ProgressBar } from './progress';

const USAGE = `Usage:
  quorumkv snapshot restore <file> [--data-dir=<dir>] [--name=default] [--initial-cluster=<name>=<peer-url>,...]
                                   [--initial-cluster-token=etcd-cluster] [--initial-advertise-peer-urls=<peer-url>,...]
                                   [--skip-hash-check] [--bump-revision=1000000000] [--mark-compacted[=false]]
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

async function restoreCommand(args: readonly string[]): Promise<number> {
  const { file, flags } = fileAndFlags(args, [...SNAPSHOT_RESTORE_FLAGS, 'bump-revision'], ['skip-hash-check', 'mark-compacted']);
  const bool = (name: string): boolean | undefined => {
    const v = flags.get(name);
    flags.delete(name);
    if (v !== undefined && !['true', 'false'].includes(v)) throw new ConfigError(`invalid --${name}=${JSON.stringify(v)}: expected true or false`);
    return v === undefined ? undefined : v === 'true';
  };
  const skip = bool('skip-hash-check') ? 'true' : 'false';
  const { bumpRevision, markCompacted } = revisionBump(flags.get('bump-revision'), bool('mark-compacted'));
  flags.delete('bump-revision');
  // The server's own flag parsing gives the same defaults (and IDs) as `quorumkv` with these flags.
  const cfg = parseServerFlags([...flags].map(([k, v]) => `--${k}=${v}`), {});
  const bar = new ProgressBar({ label: 'snapshot restore' });
  let r;
  try {
    r = await restoreSnapshot(file, {
      skipHashCheck: skip === 'true',
      bumpRevision,
      markCompacted,
      dataDir: cfg.dataDir,
      name: cfg.name,
      initialCluster: cfg.initialCluster,
      initialClusterToken: cfg.initialClusterToken,
      onProgress: (doneBytes, totalBytes) => bar.update(doneBytes, totalBytes),
    });
  } catch (err) {
    bar.abort();
    throw err;
  }
  bar.finish();
  process.stdout.write(
    `Restored snapshot ${file} into ${r.dataDir}: applied index ${r.meta.appliedIndex}, term ${r.meta.appliedTerm}, revision ${r.revision}${r.bumpedFrom !== undefined ? ` (bumped from ${r.bumpedFrom}${markCompacted ? ', compacted there' : ''})` : ''}, member ${idToHex(r.memberId)}, cluster ${idToHex(r.clusterId)}\n`,
  );
  return 0;
}

/**
 * --bump-revision / --mark-compacted (etcdutl's names, etcd 3.5.8+). A restored cluster must never
 * show revisions below what clients already saw (etcd #16028: informers and caches would keep stale
 * data, watches would miss events), so quorumkv bumps by default: a billion revisions (what etcd's
 * documentation suggests for Kubernetes: more than any cluster writes between a backup and its
 * restore), with everything below the new revision marked compacted, so a watcher or cache resuming
 * from an old revision is told to start over. --bump-revision=0 restores exactly as etcd 3.4 did.
 * As in etcdutl, --mark-compacted goes with a bump and only with one.
 */
export const BUMP_REVISION_DEFAULT = 1_000_000_000;

export function revisionBump(raw: string | undefined, markCompacted: boolean | undefined): { bumpRevision: number; markCompacted: boolean } {
  const bumpRevision = raw === undefined ? BUMP_REVISION_DEFAULT : Number(raw);
  if (raw !== undefined && (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(bumpRevision) || bumpRevision > 2 ** 52)) {
    throw new ConfigError(`invalid --bump-revision=${JSON.stringify(raw)}: expected a revision count from 0 to 2^52`);
  }
  if (bumpRevision > 0 && markCompacted === false) throw new ConfigError('--mark-compacted required if --bump-revision > 0');
  if (bumpRevision === 0 && markCompacted === true) throw new ConfigError('--mark-compacted cannot be set without --bump-revision');
  return { bumpRevision, markCompacted: bumpRevision > 0 };
}

// --- status ---------------------------------------------------------------------------------------

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
