// A client that starts many large unary requests on one connection and completes none (issue 22,
// "hardening"): each stream may hold an incomplete message up to --max-request-bytes, and the
// server credits the windows as it buffers them, so without a bound per connection one
// connection could make the member hold ~1.5 GB (1000 streams). Bounded in time (ATTACK_MS);
// the member must keep answering (a probe within 1 s), stay within an RSS bound, and end the
// streams past its bound with RESOURCE_EXHAUSTED.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import { startServer, type ServerProcess } from '../integration/harness';
import { kvClient, unary } from '../compat/grpc_client';
import { HpackDecoder } from '../../src/grpcserver/hpack';
import { PARTIAL_REQUEST_BYTES_PER_CONNECTION_MAX_DEFAULT } from '../../src/grpcserver/server';
import * as F from './frames';

const ATTACK_MS = 6000;
const PROBE_MS_MAX = 1000;
const RSS_BYTES_MAX = 400 * 1024 * 1024;
/** etcd's default --max-request-bytes (1.5 MiB): each stream declares a message just under it. */
const DECLARED_BYTES = 1_500_000;
/** What the server may hold (the bound) plus what the client may have in flight beyond it (the
 *  connection's receive window, at most 16 MiB) and a margin. */
const HELD_BYTES_MAX = PARTIAL_REQUEST_BYTES_PER_CONNECTION_MAX_DEFAULT + 24 * 1024 * 1024;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS in /proc/<pid>/status');
  return Number(m[1]) * 1024;
}

describe('hostile clients: incomplete unary requests on many streams of one connection', function () {
  this.timeout(60_000);
  let server: ServerProcess;
  const sockets: net.Socket[] = [];

  before(async () => {
    server = await startServer();
    const kv = kvClient(server.endpoint);
    try {
      await unary(kv, 'Put', { key: Buffer.from('probe'), value: Buffer.from('v') });
    } finally {
      kv.close();
    }
  });

  after(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await server?.stop('SIGKILL');
  });

  it('holds at most its per-connection bound: the streams past it end RESOURCE_EXHAUSTED; probes answered, RSS bounded', async () => {
    const rssBefore = rssBytes(server.proc.pid!);
    const s = await F.connectRaw(Number(server.endpoint.split(':')[1]), [F.settings()]);
    sockets.push(s);
    // Probes while the attack runs, each from a fresh client.
    let probeMsMax = 0;
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const kv = kvClient(server.endpoint);
        const t0 = Date.now();
        try {
          await Promise.race([unary(kv, 'Range', { key: Buffer.from('probe') }), new Promise((_, j) => setTimeout(() => j(new Error('probe: no answer in 5 s')), 5000))]);
        } finally {
          kv.close();
        }
        probeMsMax = Math.max(probeMsMax, Date.now() - t0);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    let r: F.PartialFloodResult;
    try {
      r = await F.partialRequestFlood(s, '/etcdserverpb.KV/Put', DECLARED_BYTES, ATTACK_MS, 300, 1000);
    } finally {
      probing = false;
      await prober;
    }
    const rss = rssBytes(server.proc.pid!);
    console.log(
      `      sent ${(r.sent / 2 ** 20).toFixed(0)} MiB on ${r.streams} streams; ${r.ended} ended by the server; at most ${(r.heldMax / 2 ** 20).toFixed(1)} MiB outstanding; ` +
        `slowest probe ${probeMsMax} ms; RSS ${(rssBefore / 2 ** 20).toFixed(0)} -> ${(rss / 2 ** 20).toFixed(0)} MiB`,
    );
    assert.ok(r.ended > 0, `the server ended no stream (${(r.sent / 2 ** 20).toFixed(0)} MiB sent): the attack did not reach the bound`);
    assert.ok(r.heldMax <= HELD_BYTES_MAX, `${r.heldMax} bytes outstanding at once`);
    const decoder = new HpackDecoder(64 * 1024);
    decoder.decode(r.statusBlocks[0]!);
    const fields = new Map(decoder.names.slice(0, decoder.count).map((k, i) => [k, decoder.values[i]!]));
    assert.equal(fields.get('grpc-status'), '8');
    assert.match(decodeURIComponent(fields.get('grpc-message') ?? ''), /bytes of incomplete request messages on this connection/);
    assert.ok(probeMsMax < PROBE_MS_MAX, `slowest probe ${probeMsMax} ms`);
    assert.ok(rss < RSS_BYTES_MAX, `RSS ${rss} bytes`);
  });
});
