// --auto-promote-learners on a real cluster: `member add --learner`, start the learner, and the
// leader promotes it by itself once it has caught up (etcd #15107: no retry loop in the operator's
// tooling). Visible in `member list`, the leader's log and etcd_server_learner_promote_successes.
import assert from 'node:assert/strict';
import { etcdctl } from './harness';
import { startCluster, type Cluster } from './cluster_harness';

describe('learner auto-promotion (--auto-promote-learners)', function () {
  this.timeout(120_000);
  let cluster: Cluster | undefined;
  after(async () => cluster?.stopAll());

  it('the leader promotes a learner that caught up; member list shows a voter; the metric counts it', async () => {
    cluster = await startCluster({ size: 3, args: ['--auto-promote-learners'] });
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 200; i++) assert.equal((await etcdctl(leader.endpoint, ['put', `k${i}`, 'v'.repeat(100)])).code, 0);
    const learner = await cluster.addMember({ learner: true });
    const deadline = Date.now() + 30_000;
    let row = '';
    while (Date.now() < deadline) {
      row = (await etcdctl(leader.endpoint, ['member', 'list'])).stdout.split('\n').find((l) => l.startsWith(learner.id)) ?? '';
      if (row.endsWith(', false')) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.match(row, /, false$/, `member list row: ${row}`);
    // A voter now: a linearizable read on it works (a learner refuses one).
    assert.equal((await etcdctl(learner.endpoint, ['get', 'k1', '--print-value-only'])).stdout, `${'v'.repeat(100)}\n`);
    const now = await cluster.waitForLeader();
    const metrics = await (await fetch(`${now.clientUrl}/metrics`)).text();
    if (now === leader) assert.match(metrics, /^etcd_server_learner_promote_successes 1$/m);
    assert.ok(cluster.members.some((m) => /promoted a learner that caught up with the leader/.test(m.output())));
  });
});
