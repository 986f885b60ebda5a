// Real 3-member cluster: replication and linearizable reads on followers (ReadIndex). A put
// acknowledged by any member is visible to a linearizable get on every other member right away;
// serializable reads on a follower may lag, linearizable ones may not.
import assert from 'node:assert/strict';
import { get, put, startCluster, type Cluster } from './cluster_harness';

describe('cluster (3 members): linearizable reads', function () {
  this.timeout(60_000);
  let c: Cluster;
  before(async () => (c = await startCluster({ size: 3 })));
  after(async () => c && (await c.stopAll()));

  it('every member has a distinct ID and all agree on one leader', async () => {
    const ids = new Set(c.members.map((m) => m.id));
    assert.equal(ids.size, 3);
    for (const id of ids) assert.match(id, /^[0-9a-f]+$/);
    const l = await c.waitForLeader();
    assert.ok(c.members.includes(l));
  });

  it('a put acknowledged by one member is returned by a linearizable get on every other member', async () => {
    for (let i = 0; i < 60; i++) {
      const writer = c.members[i % 3]!;
      const key = `lin/${i}`;
      const rev = await put(writer.endpoint, key, `v${i}`);
      for (const reader of c.members) {
        if (reader === writer) continue;
        const kv = await get(reader.endpoint, key);
        assert.ok(kv, `${reader.name} does not see ${key} (put via ${writer.name} at revision ${rev})`);
        assert.equal(kv.value, `v${i}`);
        assert.equal(kv.mod_revision, rev);
      }
    }
  });
});
