// LeaseTimeToLive with keys on a follower of a 3-member cluster with auth enabled
// (CVE-2023-32082): the follower checks READ on every attached key itself, asks the leader for
// the TTL only, and lists its own copy of the keys; without keys nothing is checked, as etcd.
import assert from 'node:assert/strict';
import { etcdctl, requireEtcdctl } from './harness';
import { startCluster, type Cluster, type ClusterMember } from './cluster_harness';

describe('cluster (3 members, auth): LeaseTimeToLive --keys through a follower', function () {
  this.timeout(90_000);
  let c: Cluster;
  let leader: ClusterMember;
  let follower: ClusterMember;
  const root = ['--user', 'root:rootpw'];
  const alice = ['--user', 'alice:alicepw'];

  const ok = async (m: ClusterMember, args: string[]) => {
    const r = await etcdctl(m.endpoint, args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')} on ${m.name}: ${r.stderr}`);
    return r.stdout;
  };
  const fails = async (m: ClusterMember, args: string[]) => {
    const r = await etcdctl(m.endpoint, args);
    assert.notEqual(r.code, 0, `etcdctl ${args.join(' ')} on ${m.name} should fail: ${r.stdout}`);
    return r.stderr.split('\n').filter((l) => l.startsWith('Error')).join('\n');
  };

  before(async function () {
    requireEtcdctl(this);
    c = await startCluster({ size: 3 });
    leader = await c.waitForLeader();
    follower = c.members.find((m) => m !== leader)!;
    await ok(leader, ['user', 'add', 'root:rootpw']);
    await ok(leader, ['user', 'grant-role', 'root', 'root']);
    await ok(leader, ['user', 'add', 'alice:alicepw']);
    await ok(leader, ['role', 'add', 'kreader']);
    await ok(leader, ['role', 'grant-permission', 'kreader', 'read', 'k', '--from-key']);
    await ok(leader, ['user', 'grant-role', 'alice', 'kreader']);
    await ok(leader, ['auth', 'enable']);
  });
  after(async () => c && (await c.stopAll()));

  it('a follower refuses the key list to a user who cannot read every key, and answers root with both', async () => {
    const lease = (await ok(leader, [...root, 'lease', 'grant', '100'])).split(' ')[1]!;
    await ok(leader, [...root, 'put', 'kiwi', 'v', `--lease=${lease}`]);
    await ok(leader, [...root, 'put', 'apple', 'v', `--lease=${lease}`]);
    // The follower has applied the attachments once a linearizable read through it sees them.
    await ok(follower, [...root, 'get', 'apple']);
    assert.equal(await fails(follower, [...alice, 'lease', 'timetolive', lease, '--keys']), 'Error: etcdserver: permission denied');
    assert.equal(await fails(follower, ['lease', 'timetolive', lease, '--keys']), 'Error: etcdserver: user name is empty');
    assert.match(await ok(follower, [...alice, 'lease', 'timetolive', lease]), /granted with TTL\(100s\), remaining\(\d+s\)/);
    assert.match(await ok(follower, [...root, 'lease', 'timetolive', lease, '--keys']), /granted with TTL\(100s\), remaining\(\d+s\), attached keys\(\[(apple kiwi|kiwi apple)\]\)/);
    await ok(leader, [...root, 'del', 'apple']);
    await ok(follower, [...root, 'get', 'apple']);
    assert.match(await ok(follower, [...alice, 'lease', 'timetolive', lease, '--keys']), /attached keys\(\[kiwi\]\)/);
  });
});
