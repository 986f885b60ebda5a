// quorumctl check linearizability: a Jepsen-style run against a live cluster, built in. Concurrent
// clients (spread over --endpoints) read, put and compare-and-put (a Txn comparing the value) a few
// keys under a fresh scratch prefix for --duration, recording each operation's call and return time
// and result; the history is then checked by src/linearizability (per key, bounded by
// --check-timeout) and the verdict printed, with the smallest offending sub-history on a violation.
// The scratch prefix is deleted afterwards. Exit codes: 0 linearizable, 1 not (or an error),
// 3 undecided (the checker's bound was hit).
//
// An operation that fails (deadline, unavailable, no leader) may still have been applied: writes
// and CASes that fail are recorded with an unknown outcome (pending until infinity); failed reads
// are counted and left out (they change nothing). Values are unique per run, client and operation,
// so every read names the write it saw.
import { checkHistory, describeViolation, type CheckResult, type KvOp } from '../../linearizability';
import { Rng } from '../../util/rng';
import { flagBool, flagDurationMs, flagInt, UsageError, type ParsedArgs } from './args';
import { Connection, type ConnectionOptions } from './client';
import { checkHashes } from './hashes';
import { prefixEnd } from './kv';

export const CHECK_FLAGS = ['duration', 'clients', 'keys', 'prefix', 'check-timeout'] as const;
export const CHECK_BOOLEANS = ['serializable'] as const;

export const DEFAULT_CHECK_PREFIX = '__quorumctl_check/';
const CLIENTS_MAX = 256;
const KEYS_MAX = 10_000;
/** Operations recorded at most (then the clients stop early): bounds memory and the check. */
const HISTORY_OPS_MAX = 1_000_000;
/** Pause of a client after a failed operation, so that a dead endpoint is not spun on. */
const FAILURE_BACKOFF_MS = 20;
/** Share of reads, writes and CASes in the workload. */
const READ_SHARE = 0.5;
const WRITE_SHARE = 0.25;


export const EXIT_LINEARIZABLE = 0;
export const EXIT_VIOLATION = 1;
export const EXIT_UNDECIDED = 3;

interface WorkloadOptions {
  durationMs: number;
  clients: number;
  keys: number;
  /** The run's own prefix (the --prefix plus a fresh run id). */
  runPrefix: string;
  serializable: boolean;
  commandTimeoutMs: number;
  seed: number;
}

interface Recorded {
  ops: KvOp[];
  /** Reads that failed (left out of the history). */
  failedReads: number;
  originMs: number;
  elapsedMs: number;
  stoppedBy?: string;
}

interface RangeReply {
  kvs: { value: Buffer }[];
}

/** One client: one operation at a time on its connection, until `stop()` says so. */
async function runClient(id: number, conn: Connection, o: WorkloadOptions, rec: Recorded, stop: () => boolean): Promise<void> {
  const rng = new Rng(o.seed * 1_000_003 + id);
  /** The last value this client saw or put per key: what its next CAS compares. */
  const lastSeen = new Map<string, string>();
  let seq = 0;
  const call = <T>(method: string, req: object) => conn.unary<T>('KV', method, req);
  while (!stop()) {
    const key = `${o.runPrefix}k${rng.int(o.keys)}`;
    const keyBytes = Buffer.from(key);
    const dice = rng.float();
    const expect = lastSeen.get(key);
    const value = `c${id}-${seq++}`;
    const callMs = performance.now();
    try {
      if (dice < READ_SHARE) {
        const r = await call<RangeReply>('Range', { key: keyBytes, serializable: o.serializable });
        const seen = r.kvs[0]?.value.toString('utf8') ?? null;
        if (seen !== null) lastSeen.set(key, seen);
        rec.ops.push({ kind: 'read', client: id, key, seen, callMs, returnMs: performance.now() });
      } else if (dice < READ_SHARE + WRITE_SHARE || expect === undefined) {
        await call('Put', { key: keyBytes, value: Buffer.from(value) });
        lastSeen.set(key, value);
        rec.ops.push({ kind: 'write', client: id, key, value, callMs, returnMs: performance.now() });
      } else {
        // Txn{ value(key) == expect ? put(key, value) : nothing }.
        const r = await call<{ succeeded: boolean }>('Txn', {
          compare: [{ result: 0 /* EQUAL */, target: 3 /* VALUE */, key: keyBytes, value: Buffer.from(expect) }],
          success: [{ request_put: { key: keyBytes, value: Buffer.from(value) } }],
          failure: [],
        });
        if (r.succeeded) lastSeen.set(key, value);
        else lastSeen.delete(key);
        rec.ops.push({ kind: 'cas', client: id, key, expect, value, succeeded: r.succeeded, callMs, returnMs: performance.now() });
      }
    } catch {
      // The error itself is not evidence either way: only what the history records matters. A
      // failed write may have been applied, so it stays in as an unknown outcome.
      if (dice < READ_SHARE) rec.failedReads++;
      else if (dice < READ_SHARE + WRITE_SHARE || expect === undefined) rec.ops.push({ kind: 'write', client: id, key, value, callMs, returnMs: Infinity });
      else rec.ops.push({ kind: 'cas', client: id, key, expect, value, succeeded: false, callMs, returnMs: Infinity });
      lastSeen.delete(key);
      await new Promise((r) => setTimeout(r, FAILURE_BACKOFF_MS));
    }
  }
}

/** Runs the clients for the duration (or until SIGINT, or the history cap). */
async function record(conns: Connection[], o: WorkloadOptions): Promise<Recorded> {
  const rec: Recorded = { ops: [], failedReads: 0, originMs: performance.now(), elapsedMs: 0 };
  const endMs = rec.originMs + o.durationMs;
  let interrupted = false;
  const onSignal = () => (interrupted = true);
  process.once('SIGINT', onSignal);
  const stop = () => {
    if (interrupted) rec.stoppedBy ??= 'interrupted';
    if (rec.ops.length >= HISTORY_OPS_MAX) rec.stoppedBy ??= `history cap of ${HISTORY_OPS_MAX} operations`;
    return interrupted || rec.ops.length >= HISTORY_OPS_MAX || performance.now() >= endMs;
  };
  try {
    await Promise.all(Array.from({ length: o.clients }, (_, i) => runClient(i, conns[i % conns.length]!, o, rec, stop)));
  } finally {
    process.removeListener('SIGINT', onSignal);
  }
  rec.elapsedMs = performance.now() - rec.originMs;
  return rec;
}

function summary(rec: Recorded, o: WorkloadOptions): string {
  const count = (k: KvOp['kind']) => rec.ops.filter((op) => op.kind === k).length;
  const casOk = rec.ops.filter((op) => op.kind === 'cas' && op.succeeded && op.returnMs !== Infinity).length;
  const unknown = rec.ops.filter((op) => op.returnMs === Infinity).length;
  const rate = rec.ops.length / Math.max(rec.elapsedMs / 1000, 0.001);
  return (
    `history: ${rec.ops.length} operations in ${(rec.elapsedMs / 1000).toFixed(1)} s (${rate.toFixed(0)}/s) on ${o.keys} keys by ${o.clients} clients: ` +
    `${count('read')} reads, ${count('write')} writes, ${count('cas')} CAS (${casOk} succeeded); ${unknown} of unknown outcome, ${rec.failedReads} failed reads left out` +
    (rec.stoppedBy ? ` (stopped early: ${rec.stoppedBy})` : '')
  );
}

/** Deletes the run's keys through the first connection that can; a failure is reported, not fatal. */
async function cleanUp(conns: Connection[], runPrefix: string, err: NodeJS.WritableStream): Promise<void> {
  const key = Buffer.from(runPrefix);
  const problems: string[] = [];
  for (const c of conns) {
    try {
      await c.unary('KV', 'DeleteRange', { key, range_end: prefixEnd(key) });
      return;
    } catch (e) {
      problems.push(`${c.endpoint}: ${(e as Error).message}`);
    }
  }
  err.write(`warning: could not delete the scratch prefix ${JSON.stringify(runPrefix)} (${problems.join('; ')}); delete it with: quorumctl del ${JSON.stringify(runPrefix)} --prefix\n`);
}

function verdictLines(res: CheckResult, checkMs: number, originMs: number): string[] {
  const head = `checked in ${(checkMs / 1000).toFixed(2)} s (${res.keys.length} keys, ${res.steps} search steps): `;
  if (res.verdict === 'linearizable') return [head + 'LINEARIZABLE'];
  if (res.verdict === 'unknown') return [head + `UNDECIDED (${res.unknownReason ?? 'bound reached'}); raise --check-timeout or shorten --duration`];
  return [head + 'NOT LINEARIZABLE', ...describeViolation(res.violation!, originMs)];
}

export async function checkLinearizability(endpoints: readonly string[], opts: ConnectionOptions, a: ParsedArgs, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const clients = flagInt(a, 'clients', 8);
  const keys = flagInt(a, 'keys', 8);
  if (clients < 1 || clients > CLIENTS_MAX) throw new UsageError(`--clients must be in 1..${CLIENTS_MAX}`);
  if (keys < 1 || keys > KEYS_MAX) throw new UsageError(`--keys must be in 1..${KEYS_MAX}`);
  const prefix = a.flags.get('prefix') ?? DEFAULT_CHECK_PREFIX;
  if (prefix === '') throw new UsageError('--prefix must not be empty (the check deletes what it writes under it)');
  const seed = Date.now() % 2_147_483_647;
  const o: WorkloadOptions = {
    durationMs: flagDurationMs(a, 'duration', 30_000),
    clients,
    keys,
    runPrefix: `${prefix}${seed.toString(36)}-${process.pid}/`,
    serializable: flagBool(a, 'serializable'),
    commandTimeoutMs: opts.commandTimeoutMs,
    seed,
  };
  const checkTimeoutMs = flagDurationMs(a, 'check-timeout', 120_000);
  // Every endpoint must answer: a check that silently skipped the member under test proves nothing.
  const conns: Connection[] = [];
  try {
    for (const ep of endpoints) conns.push(await Connection.openOne(ep, opts));
    out.write(
      `linearizability check: ${o.clients} clients over ${endpoints.length} endpoint(s), ${o.keys} keys under ${JSON.stringify(o.runPrefix)}, ` +
        `${(o.durationMs / 1000).toFixed(1)} s, ${o.serializable ? 'serializable' : 'linearizable'} reads, writes and CAS (Txn)\n`,
    );
    const rec = await record(conns, o);
    out.write(summary(rec, o) + '\n');
    await cleanUp(conns, o.runPrefix, err);
    const t0 = performance.now();
    const res = checkHistory(rec.ops, { timeMs: checkTimeoutMs, minimizeTimeMs: checkTimeoutMs });
    for (const line of verdictLines(res, performance.now() - t0, rec.originMs)) out.write(line + '\n');
    // Which member each client of the sub-history talked to: where to look first.
    const shown = [...new Set(res.violation?.subHistory.map((op) => op.client))].sort((x, y) => x - y);
    for (const client of shown) out.write(`  client ${client} used ${conns[client % conns.length]!.endpoint}\n`);
    if (res.verdict === 'violation') return EXIT_VIOLATION;
    return res.verdict === 'unknown' ? EXIT_UNDECIDED : EXIT_LINEARIZABLE;
  } finally {
    for (const c of conns) c.close();
  }
}

const CHECK_USAGE = 'usage: quorumctl check linearizability [--duration 30s] [--clients 8] [--keys 8] [--prefix P] [--serializable] [--check-timeout 2m] | check hashes';

export async function checkCommand(endpoints: readonly string[], opts: ConnectionOptions, a: ParsedArgs, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  if (a.positional.length !== 1) throw new UsageError(CHECK_USAGE);
  switch (a.positional[0]) {
    case 'linearizability':
      return checkLinearizability(endpoints, opts, a, out, err);
    case 'hashes':
      return checkHashes(endpoints, opts, out);
    default:
      throw new UsageError(CHECK_USAGE);
  }
}
