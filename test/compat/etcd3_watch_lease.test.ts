// The `etcd3` npm client against a real quorumkv process: watches (key, prefix, replay, prev_kv,
// filters, cancel, compaction), 10,000 writes seen exactly once in order, 1,000 watchers on one
// stream, leases, and the client's lock() and election() recipes built on them.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Etcd3, EtcdLockFailedError, type IKeyValue, type Watcher } from 'etcd3';
import { startServer, type ServerProcess } from '../integration/harness';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects a watcher's events as "PUT key=value@rev" strings. */
function record(w: Watcher): string[] {
  const out: string[] = [];
  w.on('put', (kv: IKeyValue, prev?: IKeyValue) => out.push(`PUT ${kv.key}=${kv.value}@${kv.mod_revision}${prev ? ` prev=${prev.value}` : ''}`));
  w.on('delete', (kv: IKeyValue, prev?: IKeyValue) => out.push(`DELETE ${kv.key}@${kv.mod_revision}${prev ? ` prev=${prev.value}` : ''}`));
  return out;
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('etcd3 npm client against quorumkv: Watch, Lease, lock, election', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  let client: Etcd3;
  const newClient = () => new Etcd3({ hosts: srv.url, retry: false } as ConstructorParameters<typeof Etcd3>[0]);

  before(async () => {
    srv = await startServer();
    client = newClient();
  });
  after(async () => {
    client?.close();
    await srv?.stop();
  });

  it('watches a key and a prefix: puts and deletes, only the watched keys', async () => {
    const wk = await client.watch().key('wk/a').create();
    const wp = await client.watch().prefix('wp/').create();
    const [ek, ep] = [record(wk), record(wp)];
    await client.put('wk/a').value('1');
    await client.put('wk/ab').value('x');
    await client.put('wp/1').value('2');
    await client.put('wq/1').value('no');
    await client.delete().key('wk/a');
    await client.delete().key('wp/1');
    await until(() => ek.length === 2 && ep.length === 2, 'events');
    assert.match(ek[0], /^PUT wk\/a=1@\d+$/);
    assert.match(ek[1], /^DELETE wk\/a@\d+$/);
    assert.match(ep[0], /^PUT wp\/1=2@\d+$/);
    assert.match(ep[1], /^DELETE wp\/1@\d+$/);
    await wk.cancel();
    await wp.cancel();
  });

  it('replays history from an old revision, with prev_kv', async () => {
    const first = await client.put('hist').value('v1').exec();
    await client.put('hist').value('v2');
    await client.put('hist').value('v3');
    const w = await client.watch().key('hist').startRevision(first.header.revision).withPreviousKV().create();
    const ev = record(w);
    await until(() => ev.length === 3, 'replay');
    const r = Number(first.header.revision);
    assert.deepEqual(ev, [`PUT hist=v1@${r}`, `PUT hist=v2@${r + 1} prev=v1`, `PUT hist=v3@${r + 2} prev=v2`]);
    await client.delete().key('hist');
    await until(() => ev.length === 4, 'live delete');
    assert.equal(ev[3], `DELETE hist@${r + 3} prev=v3`);
    await w.cancel();
  });

  it('filters: only puts, only deletes', async () => {
    const puts = await client.watch().key('filt').only('put').create();
    const dels = await client.watch().key('filt').only('delete').create();
    const [ep, ed] = [record(puts), record(dels)];
    await client.put('filt').value('1');
    await client.delete().key('filt');
    await client.put('filt').value('2');
    await until(() => ep.length === 2 && ed.length === 1, 'filtered events');
    assert.deepEqual(ep.map((e) => e.split('@')[0]), ['PUT filt=1', 'PUT filt=2']);
    assert.deepEqual(ed.map((e) => e.split('@')[0]), ['DELETE filt']);
    await puts.cancel();
    await dels.cancel();
  });

  it('10,000 writes are observed by a watcher: none lost, duplicated or out of order', async () => {
    const w = await client.watch().prefix('many/').create();
    const seen: { key: string; rev: number }[] = [];
    w.on('put', (kv: IKeyValue) => seen.push({ key: kv.key.toString(), rev: Number(kv.mod_revision) }));
    const N = 10_000;
    const CONCURRENCY = 64;
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < N) {
          const i = next++;
          await client.put(`many/${i % 100}`).value(String(i));
        }
      }),
    );
    await until(() => seen.length >= N, `${N} events (have ${seen.length})`, 30_000);
    await sleep(100);
    assert.equal(seen.length, N, 'no duplicates');
    for (let i = 1; i < N; i++) assert.ok(seen[i].rev > seen[i - 1].rev, `revision order at ${i}`);
    assert.equal(seen[N - 1].rev - seen[0].rev, N - 1, 'no gaps: one revision per put');
    await w.cancel();
  });

  it('1,000 watchers on one stream each get their events; cancel stops them', async () => {
    const watchers: Watcher[] = [];
    const got: number[] = new Array(1000).fill(0);
    for (let i = 0; i < 1000; i++) {
      const w = await client.watch().key(i % 2 === 0 ? 'fan/shared' : `fan/${i}`).create();
      w.on('put', () => got[i]++);
      watchers.push(w);
    }
    await client.put('fan/shared').value('x');
    await Promise.all(Array.from({ length: 500 }, (_, j) => client.put(`fan/${2 * j + 1}`).value('y')));
    await until(() => got.every((n) => n === 1), 'every watcher got one event');
    // Cancel half; the other half still get events, the cancelled ones none.
    await Promise.all(watchers.filter((_, i) => i % 2 === 0).map((w) => w.cancel()));
    await client.put('fan/shared').value('z');
    await client.put('fan/1').value('z');
    await until(() => got[1] === 2, 'live watcher event');
    await sleep(100);
    assert.ok(got.filter((_, i) => i % 2 === 0).every((n) => n === 1), 'cancelled watchers get nothing');
    await Promise.all(watchers.filter((_, i) => i % 2 === 1).map((w) => w.cancel()));
  });

  it('a watch from a compacted revision fails with a compaction notice', async () => {
    const r1 = await client.put('cw').value('1').exec();
    await client.put('cw').value('2');
    const r3 = await client.put('cw').value('3').exec();
    await client.kv.compact({ revision: r3.header.revision });
    const w = await client.watch().key('cw').startRevision(r1.header.revision).create();
    const [err] = (await once(w, 'error')) as [Error];
    assert.match(err.message, /Watcher canceled/);
  });

  it('leases: grant, put with lease, timetolive with keys, revoke deletes the keys and notifies watchers', async () => {
    const lease = client.lease(10, { autoKeepAlive: false });
    const id = await lease.grant();
    await lease.put('leased/1').value('a');
    await lease.put('leased/2').value('b');
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
    assert.equal(String(ttl.grantedTTL), '10');
    assert.ok(Number(ttl.TTL) >= 8 && Number(ttl.TTL) <= 10);
    assert.deepEqual(ttl.keys.map((k) => k.toString()), ['leased/1', 'leased/2']);
    const w = await client.watch().prefix('leased/').create();
    const ev = record(w);
    await lease.revoke();
    await until(() => ev.length === 2, 'deletes from revoke');
    // One revision for the whole revoke.
    assert.equal(ev[0].split('@')[1], ev[1].split('@')[1]);
    assert.equal(await client.get('leased/1').string(), null);
    const gone = await client.leaseClient.leaseTimeToLive({ ID: id, keys: false });
    assert.equal(String(gone.TTL), '-1');
    await w.cancel();
  });

  it('lock(): two clients never hold it at the same time', async () => {
    const c2 = newClient();
    let inside = 0;
    let maxInside = 0;
    let entries = 0;
    const worker = async (c: Etcd3) => {
      for (let done = 0; done < 5; ) {
        try {
          await c.lock('mutex').ttl(5).do(async () => {
            inside++;
            maxInside = Math.max(maxInside, inside);
            await sleep(20);
            inside--;
            entries++;
          });
          done++;
        } catch (err) {
          if (!(err instanceof EtcdLockFailedError)) throw err;
          await sleep(5); // held by the other client: etcd3's lock does not wait, retry
        }
      }
    };
    try {
      await Promise.all([worker(client), worker(c2)]);
    } finally {
      c2.close();
    }
    assert.equal(entries, 10);
    assert.equal(maxInside, 1);
  });

  it('election(): leadership passes on when the leader\'s lease is revoked, and when it expires', async () => {
    const c2 = newClient();
    const c3 = newClient();
    try {
      const e1 = client.election('el', 2);
      const first = e1.campaign('one');
      await first.wait();
      assert.equal(await e1.leader(), 'one');
      // The second candidate waits behind the first.
      const second = c2.election('el', 2).campaign('two');
      let secondElected = false;
      second.on('elected', () => (secondElected = true));
      await sleep(300);
      assert.equal(secondElected, false);
      await first.resign(); // revokes the leader's lease
      await second.wait();
      assert.equal(await e1.leader(), 'two');
      // Now the leader's client goes silent: its keepalives stop (etcd3's close() would not stop
      // them), and its 2 s lease expires on the server.
      const third = c3.election('el', 2).campaign('three');
      await sleep(100);
      (second as unknown as { lease: { release(): void } }).lease.release();
      const t0 = Date.now();
      await third.wait();
      const waited = Date.now() - t0;
      assert.equal(await e1.leader(), 'three');
      assert.ok(waited >= 500 && waited < 8000, `handed over after the TTL (${waited} ms)`);
      await third.resign();
    } finally {
      c2.close();
      c3.close();
    }
  });
});
