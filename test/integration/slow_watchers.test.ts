// Slow watchers cannot exhaust memory (etcd #16839; docs/operations.md "Beyond etcd"), on a real
// member: a Watch stream whose raw HTTP/2 client never opens its window holds no more than its
// bound while puts go in, a normal watcher keeps getting each event as it is applied, and the slow
// stream, once it reads, gets every event in order — or, if the history it still needed was
// compacted meanwhile, etcd's compaction answer. The full-size run is scripts/slow-watchers.ts.
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import http from 'node:http';
import { kvClient, unary } from '../compat/grpc_client';
import { startServer, type ServerProcess } from './harness';
import { percentile, runSlowWatch } from './slow_watch';

const MB = 1024 * 1024;

describe('slow watchers on a real member (bounded buffers, every event or a compaction answer)', function () {
  this.timeout(60_000);
  let srv: ServerProcess | undefined;

  afterEach(async () => {
    await srv?.stop();
    if (srv) fs.rmSync(srv.dataDir, { recursive: true, force: true });
    srv = undefined;
  });

  it('50 prefix watchers behind a zero window: buffered bytes stay within the bound, the normal watcher is unaffected, every event arrives in order on resume', async () => {
    srv = await startServer();
    const r = await runSlowWatch({ endpoint: srv.endpoint, pid: srv.proc.pid!, metricsUrl: srv.url, watchers: 50, prefix: true, puts: 1000, valueBytes: 1024, keys: 100, concurrency: 64, compact: false, resumeTimeoutMs: 30_000 });
    assert.deepEqual(r.wrong, []);
    assert.equal(r.completeWatchers, 50);
    assert.equal(r.eventsDelivered, 50 * 1000);
    // Each put is an event for all 50: 50 MB to deliver. The member holds one stream's bound
    // (1 MiB) plus at most one catch-up delivery (1 MiB), sampled every 200 ms.
    assert.ok(r.watchBufferedMaxBytes !== undefined && r.watchBufferedMaxBytes <= 3 * MB, `watch buffers reached ${r.watchBufferedMaxBytes} bytes`);
    assert.ok(r.grpcBufferedMaxBytes !== undefined && r.grpcBufferedMaxBytes <= 3 * MB, `the client port held ${r.grpcBufferedMaxBytes} bytes`);
    assert.ok(r.rssMaxPutsKb - r.rssBeforeKb < 150 * 1024, `VmRSS grew by ${r.rssMaxPutsKb - r.rssBeforeKb} kB during the puts`);
    assert.ok(r.rssMaxResumeKb - r.rssBeforeKb < 200 * 1024, `VmRSS grew by ${r.rssMaxResumeKb - r.rssBeforeKb} kB while the slow stream read`);
    assert.ok(r.slowBytesBeforeResume <= 65_535, 'the zero window held');
    assert.ok((r.metrics['quorumkv_watch_slow_watchers_total (before resume)'] ?? 0) >= 50, JSON.stringify(r.metrics));
    // The normal watcher got every one of its events while the puts went on, none late by more
    // than a few seconds on a loaded CI machine (it is not moved to catch-up).
    assert.equal(r.fastMissed, 0);
    assert.ok(r.fastLatenciesMs.length > 0);
    assert.ok(percentile(r.fastLatenciesMs, 100) < 5000, `put→event max ${percentile(r.fastLatenciesMs, 100)} ms`);
  });

  it('history compacted while the stream did not read: each watcher gets a gap-free prefix, then canceled with compact_revision', async () => {
    srv = await startServer();
    const r = await runSlowWatch({ endpoint: srv.endpoint, pid: srv.proc.pid!, metricsUrl: srv.url, watchers: 20, prefix: true, puts: 500, valueBytes: 1024, keys: 50, concurrency: 64, compact: true, resumeTimeoutMs: 30_000 });
    assert.deepEqual(r.wrong, []);
    assert.equal(r.compactedWatchers, 20);
    assert.equal(r.metrics.quorumkv_watch_compacted_watchers_total, 20);
  });

  it('20 slow streams over the member-wide bound: together they hold at most the bound plus 64 KiB each, none is ended, all complete on resume', async () => {
    srv = await startServer({ args: ['--max-watch-buffer-bytes=4194304'] });
    const r = await runSlowWatch({ endpoint: srv.endpoint, pid: srv.proc.pid!, metricsUrl: srv.url, watchers: 20, streams: 20, prefix: true, puts: 600, valueBytes: 1024, keys: 50, concurrency: 64, compact: false, resumeTimeoutMs: 30_000 });
    assert.deepEqual(r.wrong, []);
    assert.equal(r.completeWatchers, 20);
    const bound = 4 * MB + 20 * (64 * 1024 + 2 * 1024);
    assert.ok(r.watchBufferedMaxBytes !== undefined && r.watchBufferedMaxBytes <= bound, `watch buffers reached ${r.watchBufferedMaxBytes} bytes`);
    // Without the bound they would hold 20 × 600 KiB: the bound is what stopped them.
    assert.ok((r.metrics['quorumkv_watch_streams_over_bound_total (before resume)'] ?? 0) >= 1, JSON.stringify(r.metrics));
    assert.equal(r.metrics.quorumkv_grpc_server_calls_evicted_total, 0);
  });

  it('the JSON gateway: a /v3/watch client that stops reading holds at most the stream bound; on reading it gets every event in order', async () => {
    srv = await startServer();
    const WATCHERS = 10;
    const PUTS = 1500;
    const b64 = (x: string) => Buffer.from(x).toString('base64');
    const req = http.request(`${srv.url}/v3/watch`, { method: 'POST', headers: { 'Transfer-Encoding': 'chunked' } });
    req.on('error', () => undefined);
    for (let i = 0; i < WATCHERS; i++) req.write(JSON.stringify({ create_request: { key: b64('g/'), range_end: b64('g0') } }));
    const res = await new Promise<http.IncomingMessage>((resolve) => req.once('response', resolve));
    let text = '';
    const revs = new Map<string, number[]>();
    let created = 0;
    res.setEncoding('utf8');
    res.on('data', (d: string) => {
      text += d;
      let nl: number;
      while ((nl = text.indexOf('\n')) >= 0) {
        const line = JSON.parse(text.slice(0, nl)) as { result: { watch_id?: string; created?: boolean; events?: { kv: { mod_revision: string } }[] } };
        text = text.slice(nl + 1);
        const id = line.result.watch_id ?? '0';
        if (line.result.created) created++;
        const l = revs.get(id) ?? [];
        for (const e of line.result.events ?? []) l.push(Number(e.kv.mod_revision));
        revs.set(id, l);
      }
    });
    for (let i = 0; created < WATCHERS; i++) {
      assert.ok(i < 500, `${created} watchers created`);
      await new Promise((r) => setTimeout(r, 10));
    }
    res.pause(); // the client stops reading: the socket's buffers fill, then the gateway's
    const kv = kvClient(srv.endpoint);
    const value = Buffer.alloc(1024, 0x61);
    let most = 0;
    const sample = async () => {
      const m = /^quorumkv_watch_buffered_bytes ([0-9.e+]+)$/m.exec(await (await fetch(`${srv!.url}/metrics`)).text());
      most = Math.max(most, Number(m?.[1] ?? 0));
    };
    const firstRev = Number((await unary<{ header: { revision: string } }>(kv, 'Range', { key: Buffer.from('g/') })).header.revision) + 1;
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < PUTS) {
          next++;
          await unary(kv, 'Put', { key: Buffer.from(`g/${next % 10}`), value });
          if (next % 100 === 0) await sample();
        }
      }),
    );
    await sample();
    const slowMoves = Number(/^quorumkv_watch_slow_watchers_total ([0-9.e+]+)$/m.exec(await (await fetch(`${srv.url}/metrics`)).text())?.[1] ?? 0);
    kv.close();
    res.resume();
    const want = Array.from({ length: PUTS }, (_, i) => firstRev + i);
    for (let i = 0; [...revs.values()].some((l) => l.length < PUTS); i++) {
      assert.ok(i < 2000, `caught up: ${[...revs.values()].map((l) => l.length).join(',')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    req.destroy();
    assert.equal(revs.size, WATCHERS);
    for (const [id, l] of revs) assert.deepEqual(l, want, `watcher ${id}`);
    assert.ok(most <= MB + 64 * 1024, `the gateway held ${most} bytes for the watch stream`);
    assert.ok(slowMoves >= WATCHERS, `${slowMoves} slow-watcher moves`);
  });
});
