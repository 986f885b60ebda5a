// Failpoints for fault-injection tests (in the spirit of etcd's gofail): when the environment
// variable QUORUMKV_FAILPOINTS names a JSON file, the member re-reads it a few times a second and
// obeys it. Without the variable every failpoint is off and costs one branch.
//
//   { "dropPeerTraffic": ["*"] }            this member neither sends to nor accepts from any peer
//   { "dropPeerTraffic": ["8e9e05c52164694d"] }   ... only to/from these members (hex IDs)
//   { "walWriteError": "EIO" }              every WAL write fails with this errno code (after
//                                           writing the first half of its bytes: a torn write)
//
// A partition is injected by writing the file of the members to cut off; it heals when the file is
// emptied or removed.
import fs from 'node:fs';
import os from 'node:os';
import util from 'node:util';

const POLL_MS = 100;

interface Failpoints {
  dropPeerTraffic?: string[];
  walWriteError?: string;
}

let current: Failpoints = {};
let started = false;
let timer: NodeJS.Timeout | undefined;
/** The last load error reported, so that a file that stays bad is reported once, not 10 times a second. */
let lastError = '';

function load(file: string): void {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    // A removed file is the documented way to turn every failpoint off.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') report(`cannot read ${file}: ${String(err)}`);
    current = {};
    return;
  }
  try {
    current = text === '' ? {} : (JSON.parse(text) as Failpoints);
    lastError = '';
  } catch (err) {
    // Most likely caught half-written: keep the failpoints as they were until the next poll.
    report(`cannot parse ${file} (keeping the previous failpoints): ${String(err)}`);
  }
}

function report(message: string): void {
  if (message === lastError) return;
  lastError = message;
  process.stderr.write(JSON.stringify({ level: 'warn', ts: new Date().toISOString(), msg: `failpoints: ${message}` }) + '\n');
}

/** Starts obeying `file` (tests of one process call it directly; a member reads
 *  QUORUMKV_FAILPOINTS). `undefined` turns every failpoint off again. */
export function watchFailpoints(file: string | undefined): void {
  started = true;
  if (timer) clearInterval(timer);
  timer = undefined;
  current = {};
  if (!file) return;
  load(file);
  timer = setInterval(() => load(file), POLL_MS);
  timer.unref();
}

function ensureStarted(): void {
  if (started) return;
  watchFailpoints(process.env.QUORUMKV_FAILPOINTS);
}

/** True if traffic between this member and peer `id` must be dropped. */
export function dropPeerTraffic(id: bigint): boolean {
  ensureStarted();
  const list = current.dropPeerTraffic;
  if (!list || list.length === 0) return false;
  return list.includes('*') || list.includes(id.toString(16));
}

/** The error the WAL's next write must fail with (as libuv reports it: code, errno, syscall), or
 *  undefined. Unknown codes fail as EIO. */
export function walWriteError(): NodeJS.ErrnoException | undefined {
  ensureStarted();
  const code = current.walWriteError;
  if (code === undefined) return undefined;
  const known = (os.constants.errno as Record<string, number | undefined>)[code];
  const errno = known ?? os.constants.errno.EIO;
  const [name, description] = util.getSystemErrorMap().get(-errno) ?? ['EIO', 'i/o error'];
  const err: NodeJS.ErrnoException = new Error(`${name}: ${description}, write`);
  err.errno = -errno;
  err.code = name;
  err.syscall = 'write';
  return err;
}
