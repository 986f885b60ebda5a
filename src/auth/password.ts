// Password hashing. New hashes are bcrypt, as etcd's (cost from --bcrypt-cost, etcd's default 10),
// so users survive a snapshot moved between quorumkv and etcd in either direction. Hashing and
// verification run in a worker thread (bcrypt_worker.ts, bcryptjs): a cost-10 hash takes ~100 ms
// of CPU, which must never sit on the event loop. Hashing happens on the member that
// receives the request, before anything is proposed, so clear-text passwords never reach the Raft
// log, the WAL, the backend or the logs.
//
// Stored forms: bcrypt's "$2a$" / "$2b$" / "$2y$" strings; and, verified only (earlier quorumkv
// versions wrote it), "scrypt$<N>$<r>$<p>$<salt base64>$<hash base64>".
import { scrypt, timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Errors } from '../util/errors';

/** etcd's --bcrypt-cost default and bounds (golang.org/x/crypto/bcrypt MinCost, MaxCost). */
export const BCRYPT_COST_DEFAULT = 10;
export const BCRYPT_COST_MIN = 4;
export const BCRYPT_COST_MAX = 31;

const BCRYPT = /^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/;
const SCRYPT = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/;
const SCRYPT_KEY_BYTES = 32;
const SCRYPT_MAXMEM_BYTES = 64 * 1024 * 1024;
/** Bounds on the parameters of a stored scrypt hash (ours were N=2^14, r=8, p=1). */
const SCRYPT_N_MAX = 1 << 20;
const SCRYPT_RP_MAX = 16;

function scryptDerive(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, SCRYPT_KEY_BYTES, { N: n, r, p, maxmem: SCRYPT_MAXMEM_BYTES }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

// ---- the bcrypt worker ------------------------------------------------------------------------

type WorkerReply = { id: number; hash?: string; ok?: boolean; error?: string };

/** Hashes and checks waiting for the worker at most (each ~0.1 s of CPU at cost 10): beyond it,
 *  UserAdd/Authenticate are refused with etcd's "too many requests" rather than queued without
 *  bound by a client that floods them. */
export const BCRYPT_PENDING_MAX = 256;

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();

/** One request to the bcrypt worker (started on first use; unref'd while idle, so it never keeps
 *  a stopping process alive). A worker that dies fails what it had, and the next call starts a new one. */
function ask(msg: { op: 'hash'; password: string; cost: number } | { op: 'verify'; password: string; hash: string }): Promise<WorkerReply> {
  if (!worker) {
    const w = new Worker(path.join(__dirname, 'bcrypt_worker.js'));
    w.unref();
    w.on('message', (r: WorkerReply) => {
      const p = pending.get(r.id);
      if (!p) return;
      pending.delete(r.id);
      if (pending.size === 0) w.unref();
      if (r.error !== undefined) p.reject(new Error(`bcrypt: ${r.error}`));
      else p.resolve(r);
    });
    const failAll = (err: Error) => {
      if (worker === w) worker = undefined;
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    };
    w.on('error', failAll);
    w.on('exit', (code) => failAll(new Error(`bcrypt: the worker exited (code ${code})`)));
    worker = w;
  }
  if (pending.size >= BCRYPT_PENDING_MAX) return Promise.reject(Errors.TooManyRequests);
  const id = nextId++;
  const w = worker;
  return new Promise<WorkerReply>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    w.ref();
    w.postMessage({ id, ...msg });
  });
}

/** A bcrypt hash of `password` at `cost`, computed off the event loop. */
export function hashPassword(password: string, cost = BCRYPT_COST_DEFAULT): Promise<string> {
  if (!Number.isInteger(cost) || cost < BCRYPT_COST_MIN || cost > BCRYPT_COST_MAX) {
    return Promise.reject(new RangeError(`bcrypt cost ${cost} is outside [${BCRYPT_COST_MIN}, ${BCRYPT_COST_MAX}]`));
  }
  return ask({ op: 'hash', password, cost }).then((r) => r.hash!);
}

/** A stored form verifyPassword understands (bcrypt, or an earlier quorumkv scrypt hash). */
export function isHashedPassword(s: string): boolean {
  return BCRYPT.test(s) || SCRYPT.test(s);
}

/** Compares `password` with a stored hash (constant time); false for a malformed hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  if (BCRYPT.test(stored)) return (await ask({ op: 'verify', password, hash: stored })).ok === true;
  if (!SCRYPT.test(stored)) return false;
  const [, n, r, p, salt, hash] = stored.split('$') as [string, string, string, string, string, string];
  const [N, R, P] = [Number(n), Number(r), Number(p)];
  if (N > SCRYPT_N_MAX || R > SCRYPT_RP_MAX || P > SCRYPT_RP_MAX) return false;
  const expected = Buffer.from(hash, 'base64');
  const key = await scryptDerive(password, Buffer.from(salt, 'base64'), N, R, P);
  return key.length === expected.length && timingSafeEqual(key, expected);
}
