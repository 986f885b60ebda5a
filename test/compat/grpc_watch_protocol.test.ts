// Watch protocol details on the wire (raw gRPC, checked against etcd 3.4): create answers in order,
// watch ids, duplicate id and empty range rejected, cancel, compaction notice, progress request and
// periodic progress notification, fragments, and a slow (non-reading) client not blocking writers.
import assert from 'node:assert/strict';
import { startServer, type ServerProcess } from '../integration/harness';
import { RawWatchStream, kvClient, unary } from './grpc_client';

const b = (s: string) => Buffer.from(s);

describe('Watch protocol over raw gRPC', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  let kv: ReturnType<typeof kvClient>;
  const streams: RawWatchStream[] = [];
  const stream = () => {
    const s = new RawWatchStream(srv.endpoint);
    streams.push(s);
    return s;
  };
  const put = (k: string, v: string | Buffer) => unary<{ header: { revision: string } }>(kv, 'Put', { key: b(k), value: typeof v === 'string' ? b(v) : v });

  before(async () => {
    const saved = process.env.ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL;
    process.env.ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL = '300ms';
    try {
      srv = await startServer({ args: ['--max-request-bytes=65536'] });
    } finally {
      if (saved === undefined) delete process.env.ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL;
      else process.env.ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL = saved;
    }
    kv = kvClient(srv.endpoint);
  });
  after(async () => {
    for (const s of streams) s.closeClient();
    kv?.close();
    await srv?.stop();
  });

  it('creates are answered in order; ids from 0, client-chosen ids, duplicates and empty ranges rejected', async () => {
    const s = stream();
    s.create({ key: b('a') });
    s.create({ key: b('a'), watch_id: 7 });
    s.create({ key: b('b'), watch_id: 7 });
    s.create({ key: b('b'), range_end: b('a') });
    s.create({ key: b('a') });
    await s.waitFor(() => s.responses.length >= 5);
    const r = s.responses.map((x) => [x.watch_id, x.created, x.canceled, x.cancel_reason]);
    assert.deepEqual(r, [
      ['0', true, false, ''],
      ['7', true, false, ''],
      ['-1', true, true, 'mvcc: duplicate watch ID provided on the WatchStream'],
      ['-1', true, true, 'mvcc: watcher range is empty'],
      ['1', true, false, ''],
    ]);
    s.send({ cancel_request: { watch_id: 7 } });
    const c = await s.waitFor((x) => x.canceled && x.watch_id === '7');
    assert.ok(Number(c.header.revision) > 0);
  });

  it('a watch from a compacted revision: created, then canceled with compact_revision', async () => {
    await put('cmp', '1');
    const last = await put('cmp', '2');
    await unary(kv, 'Compact', { revision: last.header.revision });
    const s = stream();
    s.create({ key: b('cmp'), start_revision: 2 });
    const c = await s.waitFor((x) => x.canceled);
    assert.equal(s.responses[0].created, true);
    assert.equal(c.watch_id, s.responses[0].watch_id);
    assert.equal(c.compact_revision, last.header.revision);
  });

  it('events of one txn arrive in one response; the header carries the revision', async () => {
    const s = stream();
    s.create({ key: b('tx/'), range_end: b('tx0') });
    await s.waitFor((x) => x.created);
    const t = await unary<{ header: { revision: string } }>(kv, 'Txn', {
      success: [{ request_put: { key: b('tx/1'), value: b('1') } }, { request_put: { key: b('tx/2'), value: b('2') } }],
    });
    const ev = await s.waitFor((x) => x.events.length > 0);
    assert.equal(ev.events.length, 2);
    assert.equal(ev.header.revision, t.header.revision);
  });

  it('a progress request is answered at once with watch_id -1 and the current revision', async () => {
    const s = stream();
    s.create({ key: b('prog') });
    await s.waitFor((x) => x.created);
    const p = await put('zzz', '1');
    s.send({ progress_request: {} });
    const r = await s.waitFor((x) => !x.created && x.watch_id === '-1');
    assert.equal(r.header.revision, p.header.revision);
    assert.equal(r.events.length, 0);
  });

  it('progress_notify: periodic notifications for idle watchers (interval set by the server option)', async () => {
    const s = stream();
    s.create({ key: b('idle'), progress_notify: true });
    s.create({ key: b('idle2') });
    await s.waitFor((x) => x.created && x.watch_id === '1');
    const n = await s.waitFor((x) => !x.created && x.watch_id === '0' && x.events.length === 0, 3000);
    assert.ok(Number(n.header.revision) > 0);
    assert.ok(!s.responses.some((x) => x.watch_id === '1' && !x.created), 'no notifications without progress_notify');
  });

  it('fragment: a revision larger than --max-request-bytes is split, all but the last marked', async () => {
    const s = stream();
    s.create({ key: b('frag/'), range_end: b('frag0'), fragment: true, prev_kv: true });
    s.create({ key: b('frag/'), range_end: b('frag0'), watch_id: 100, prev_kv: true });
    await s.waitFor((x) => x.created && x.watch_id === '100');
    const big = Buffer.alloc(30_000, 0x61);
    const ops = [0, 1].map((i) => ({ request_put: { key: b(`frag/${i}`), value: big } }));
    await unary(kv, 'Txn', { success: ops }); // 60 KB of events: under the 64 KiB limit
    const t = await unary<{ header: { revision: string } }>(kv, 'Txn', { success: ops }); // 120 KB with prev_kv
    await s.waitFor((x) => x.watch_id === '100' && x.header.revision === t.header.revision);
    await s.waitFor((x) => x.watch_id === '0' && x.header.revision === t.header.revision && !x.fragment);
    const mine = s.responses.filter((x) => x.watch_id === '0' && x.events.length > 0);
    assert.deepEqual(mine.map((x) => [x.events.length, x.fragment]), [[2, false], [1, true], [1, false]]);
    const whole = s.responses.filter((x) => x.watch_id === '100' && x.events.length > 0);
    assert.deepEqual(whole.map((x) => [x.events.length, x.fragment]), [[2, false], [2, false]], 'without fragment: whole revisions');
  });

  it('a client that stops reading does not block writes or other watchers, and gets every event later', async () => {
    const slow = stream();
    const fast = stream();
    slow.create({ key: b('bp') });
    fast.create({ key: b('bp') });
    await slow.waitFor((x) => x.created);
    await fast.waitFor((x) => x.created);
    (slow as unknown as { call: { pause(): void; resume(): void } }).call.pause();
    const value = Buffer.alloc(8_000, 0x62);
    const N = 600;
    const t0 = Date.now();
    for (let i = 0; i < N; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => put('bp', Buffer.concat([b(`${i + j}:`), value]))));
    const writeMs = Date.now() - t0;
    await fast.waitFor(() => fast.responses.flatMap((x) => x.events).length >= N, 20_000);
    (slow as unknown as { call: { resume(): void } }).call.resume();
    await slow.waitFor(() => slow.responses.flatMap((x) => x.events).length >= N, 20_000);
    const revs = slow.responses.flatMap((x) => x.events).map((e) => Number(e.kv.mod_revision));
    assert.equal(revs.length, N);
    for (let i = 1; i < N; i++) assert.equal(revs[i], revs[i - 1] + 1);
    assert.ok(writeMs < 15_000, `writes were not blocked (${writeMs} ms)`);
  });
});
