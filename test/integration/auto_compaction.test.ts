// --auto-compaction-retention on a real server process, driven by the etcd3 npm client: with a
// 2-second periodic retention and a write every 100 ms, old revisions become unreadable
// (etcd's "required revision has been compacted"), and what stays readable is about the last
// retention window of history, not less.
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { startServer, type ServerProcess } from './harness';

const RETENTION_MS = 2000;

describe('automatic compaction (--auto-compaction-retention, real process, etcd3 client)', function () {
  this.timeout(60_000);
  let srv: ServerProcess | undefined;
  let client: Etcd3 | undefined;
  afterEach(async () => {
    client?.close();
    await srv?.stop();
    srv = client = undefined;
  });

  /** true when revision `rev` can still be read. */
  async function readable(rev: number): Promise<boolean> {
    try {
      await client!.get('ac/k').revision(rev).string();
      return true;
    } catch (err) {
      assert.match(String(err), /required revision has been compacted/);
      return false;
    }
  }

  it('periodic, 2s: keeps about the last 2 seconds of history and compacts what is older', async () => {
    srv = await startServer({ args: ['--auto-compaction-retention=2s'] });
    client = new Etcd3({ hosts: srv.url });
    const writes: { at: number; rev: number }[] = [];
    const t0 = Date.now();
    for (let i = 0; Date.now() - t0 < 3 * RETENTION_MS + 500 && i < 200; i++) {
      const r = await client.put('ac/k').value(String(i)).exec();
      writes.push({ at: Date.now(), rev: Number(r.header.revision) });
      await new Promise((res) => setTimeout(res, 100));
    }
    const end = Date.now();
    const first = writes[0]!.rev;
    const last = writes[writes.length - 1]!.rev;
    assert.equal(await readable(first), false, 'the first write, 6 s old, must be compacted');
    assert.equal(await readable(last), true);
    // The oldest readable revision (binary search): the compaction point.
    let lo = first;
    let hi = last;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (await readable(mid)) hi = mid;
      else lo = mid + 1;
    }
    const compactedAt = writes.find((w) => w.rev >= lo)!;
    const age = end - compactedAt.at;
    // Compactions run every 2 s to the revision sampled 2 s before, so the history kept is
    // between one and two windows (plus the sampling step and scheduling slack).
    assert.ok(age >= RETENTION_MS - 300, `kept only ${age} ms of history`);
    assert.ok(age <= 2 * RETENTION_MS + 1200, `kept ${age} ms of history: compaction is late`);
    assert.match(srv.output(), /auto compaction done/);
  });
});
