// The periodic corruption check on real processes: a follower whose backend was altered while it
// was down (one value rewritten in place, as a bad disk or a bug would) is found by the leader's
// check within a few intervals; the CORRUPT alarm then stops writes on every member with etcd's
// "etcdserver: corrupt cluster", while reads are still served.
import assert from 'node:assert/strict';
import { etcdctl } from './harness';
import { startCluster, type Cluster } from './cluster_harness';
import { rewriteValue } from './tamper';


describe('corruption check (--experimental-corrupt-check-time)', function () {
  this.timeout(120_000);
  let cluster: Cluster | undefined;
  after(async () => cluster?.stopAll());

  it("raises CORRUPT for a follower whose state differs; writes then fail with etcd's error, reads are served", async () => {
    cluster = await startCluster({ size: 3, args: ['--experimental-corrupt-check-time=500ms'] });
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 20; i++) assert.equal((await etcdctl(leader.endpoint, ['put', `k${i}`, `good-value-${i}`])).code, 0);
    const follower = cluster.members.find((m) => m !== leader)!;
    await cluster.waitForRevision(21);
    // A few clean rounds first: no alarm on a healthy cluster.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await etcdctl(leader.endpoint, ['alarm', 'list'])).stdout, '');
    await follower.stop();
    assert.equal(await rewriteValue(follower.dataDir, 'good-value-7', 'evil-value-7'), 1);
    await follower.restart();
    const deadline = Date.now() + 20_000;
    let alarms = '';
    while (Date.now() < deadline) {
      alarms = (await etcdctl(leader.endpoint, ['alarm', 'list'])).stdout;
      if (alarms.includes('CORRUPT')) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(alarms, `memberID:${BigInt('0x' + follower.id).toString()} alarm:CORRUPT \n`);
    for (const m of cluster.members) {
      const put = await etcdctl(m.endpoint, ['put', 'after', 'x']);
      assert.notEqual(put.code, 0);
      assert.match(put.stderr, /etcdserver: corrupt cluster/);
    }
    const got = await etcdctl(leader.endpoint, ['get', 'k3', '--print-value-only']);
    assert.equal(got.stdout, 'good-value-3\n');
    assert.match(leader.output(), /corruption check: member state differs from the leader/);
  });
});
