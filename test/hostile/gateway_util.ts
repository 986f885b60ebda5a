// Hostile HTTP/1.1 clients of the JSON gateway, over raw sockets, each bounded in time and bytes,
// and a prober that measures how long an ordinary request (POST /v3/kv/range) takes meanwhile.
// Used by test/hostile/gateway.test.ts against quorumkv; the same functions measured etcd 3.4
// side by side for docs/security.md (see there for the command).
import fs from 'node:fs';
import net from 'node:net';

/** A probe slower than this counts as failed (and its time as this). */
export const PROBE_TIMEOUT_MS = 3000;

/** One ordinary request: its latency in ms (PROBE_TIMEOUT_MS if it failed or timed out). */
export async function probeOnce(url: string): Promise<number> {
  const t0 = performance.now();
  try {
    const r = await fetch(`${url}/v3/kv/range`, { method: 'POST', body: '{"key":"cHJvYmU="}', signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    await r.text();
    if (r.status !== 200) return PROBE_TIMEOUT_MS;
  } catch {
    return PROBE_TIMEOUT_MS; // a refused or timed-out probe is the measurement, not an error
  }
  return performance.now() - t0;
}

/** Probes every `intervalMs` (one at a time) until stopped; reports the slowest. */
export class Prober {
  private stopped = false;
  private readonly done: Promise<void>;
  readonly latenciesMs: number[] = [];

  constructor(
    private readonly url: string,
    intervalMs = 100,
  ) {
    this.done = (async () => {
      while (!this.stopped) {
        this.latenciesMs.push(await probeOnce(this.url));
        await sleep(intervalMs);
      }
    })();
  }

  async stop(): Promise<{ maxMs: number; count: number }> {
    this.stopped = true;
    await this.done;
    return { maxMs: Math.max(0, ...this.latenciesMs), count: this.latenciesMs.length };
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

/** Writes and waits until the bytes left (or the socket is gone). */
function send(s: net.Socket, data: string | Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve();
    s.write(data, () => resolve());
  });
}

function chunk(data: string | Buffer): Buffer {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
  return Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
}

/** A value of `valueBytes` left unfinished in a chunked body, then `trickleChunks` one-byte
 *  chunks, each its own TCP segment. `path` is a stream (/v3/watch) or a unary route. */
export async function unfinishedValueThenTrickle(port: number, path: string, valueBytes: number, trickleChunks: number, maxMs: number): Promise<{ sentChunks: number }> {
  const s = await connect(port);
  s.on('error', () => undefined); // the server may close the connection: that is allowed
  const end = Date.now() + maxMs;
  let sentChunks = 0;
  try {
    await send(s, `POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`);
    await send(s, chunk('{"create_request":{"key":"' + 'A'.repeat(valueBytes)));
    while (sentChunks < trickleChunks && !s.destroyed && Date.now() < end) {
      await send(s, chunk('A'));
      sentChunks++;
      await sleep(1); // each its own segment, as a slow client's
    }
  } finally {
    s.destroy();
  }
  return { sentChunks };
}

/** `clients` connections each sending, one after the other until `maxMs`, a Range whose revision
 *  is a `digits`-digit integer. Returns the requests answered and the slowest answer. */
export async function hugeIntegers(port: number, digits: number, clients: number, maxMs: number): Promise<{ answered: number; unanswered: number; slowestMs: number }> {
  const body = Buffer.from('{"key":"YQ==","revision":' + '1'.repeat(digits) + '}');
  const end = Date.now() + maxMs;
  let answered = 0;
  let unanswered = 0; // reset before the status line could be read (a server closing early)
  let slowestMs = 0;
  const one = async () => {
    while (Date.now() < end) {
      const t0 = performance.now();
      const ok = await rawRequest(port, '/v3/kv/range', body, Math.max(100, end - Date.now()));
      if (!ok) {
        unanswered++;
        await sleep(10);
        continue;
      }
      answered++;
      slowestMs = Math.max(slowestMs, performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: clients }, one));
  return { answered, unanswered, slowestMs };
}

/** One POST with Content-Length on its own connection; resolves true once a status line came back
 *  (the server may answer before the body is all sent, and close). */
export function rawRequest(port: number, path: string, body: Buffer, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const t = setTimeout(() => finish(false), timeoutMs);
    const finish = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    // A request refused while it is still being sent may see the connection reset rather than
    // read the 400 (the server closes with the rest of the body unread): a refusal all the same.
    s.on('error', (e: NodeJS.ErrnoException) => finish(/^HTTP\/1\.1 \d{3}/.test(got) || e.code === 'ECONNRESET' || e.code === 'EPIPE'));
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (/\r\n\r\n/.test(got)) finish(true);
    });
    s.on('close', () => finish(/^HTTP\/1\.1 \d{3}/.test(got)));
    s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
    s.write(body);
  });
}

/** A Txn with `compares` minimal compares (`{"key":"YQ=="}`), sent once per client. */
export async function manyCompares(port: number, compares: number, clients: number, timeoutMs: number): Promise<number> {
  const body = Buffer.from('{"compare":[' + Array.from({ length: compares }, () => '{"key":"YQ=="}').join(',') + ']}');
  const r = await Promise.all(Array.from({ length: clients }, () => rawRequest(port, '/v3/kv/txn', body, timeoutMs)));
  return r.filter(Boolean).length;
}

/** `conns` connections trickling request headers one byte every `intervalMs` for `maxMs`. */
export async function slowHeaders(port: number, conns: number, intervalMs: number, maxMs: number): Promise<{ closedByServer: number }> {
  const head = 'POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n' + 'X-Slow: ' + 'a'.repeat(10_000);
  let closedByServer = 0;
  const one = async () => {
    const s = await connect(port);
    s.on('error', () => undefined);
    let closed = false;
    s.on('close', () => (closed = true));
    const end = Date.now() + maxMs;
    for (let i = 0; !closed && Date.now() < end; i++) {
      s.write(head[i % head.length]!);
      await sleep(intervalMs);
    }
    if (closed) closedByServer++;
    s.destroy();
  };
  await Promise.all(Array.from({ length: conns }, one));
  return { closedByServer };
}
