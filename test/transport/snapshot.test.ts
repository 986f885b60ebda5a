// The snapshot stream: a snapshot arrives whole and byte-exact through onSnapshot after travelling in
// chunks, and the sender learns the outcome (ok, receiver failed to install, receiver over its limit).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MessageType, newMessage, type Message, type NodeId } from '../../src/raft';
import { connectAll, heartbeat, startMember, stopMember, waitFor, type Member } from './helpers';

const MiB = 1024 * 1024;

function msgSnap(from: NodeId, to: NodeId, data: Uint8Array, index = 5000): Message {
  return newMessage({
    type: MessageType.MsgSnap,
    from,
    to,
    term: 9,
    snapshot: { data, metadata: { index, term: 8, confState: { voters: [from, to, 2n ** 64n - 1n], learners: [7n] } } },
  });
}

describe('transport: snapshot stream', function () {
  this.timeout(15_000);
  const members: Member[] = [];
  after(async () => {
    await Promise.all(members.map(stopMember));
  });
  const member = async (...args: Parameters<typeof startMember>): Promise<Member> => {
    const m = await startMember(...args);
    members.push(m);
    return m;
  };

  it('delivers a 20 MiB snapshot in chunks, intact, to onSnapshot and reports ok; messages keep flowing', async () => {
    const a = await member(1n);
    const b = await member(2n);
    connectAll([a, b]);
    const data = randomBytes(20 * MiB);
    a.transport.send([msgSnap(1n, 2n, data), heartbeat(1n, 2n, 1)]);
    await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status', 10_000);
    assert.deepEqual(a.snapshotStatus, [{ id: 2n, ok: true }]);
    assert.equal(b.snapshots.length, 1);
    const { m, data: got } = b.snapshots[0];
    assert.equal(m.type, MessageType.MsgSnap);
    assert.equal(m.from, 1n);
    assert.deepEqual(m.snapshot?.metadata, { index: 5000, term: 8, confState: { voters: [1n, 2n, 2n ** 64n - 1n], learners: [7n] } });
    assert.equal(got.length, data.length);
    assert.ok(got.equals(data), 'snapshot bytes differ');
    assert.equal(m.snapshot?.data, got);
    // The heartbeat took the message stream, not the snapshot's.
    await waitFor(() => b.received.length === 1, 'heartbeat');
    assert.equal(b.received[0].type, MessageType.MsgHeartbeat);
    // 1 MiB chunks: the header chunk and 20 data chunks, as the receiver counted them.
    assert.ok(b.logLines.some((l) => l.includes('received snapshot') && l.includes('"chunks":21')));
  });

  it('streams a snapshot from getSnapshotData (async chunks of any size) without holding it whole', async () => {
    const parts = [randomBytes(300 * 1024), randomBytes(3 * MiB + 17), randomBytes(1), randomBytes(700 * 1024)];
    const total = parts.reduce((n, p) => n + p.length, 0);
    const a = await member(11n, {
      snapshotChunkBytes: 256 * 1024,
      getSnapshotData: async () => ({
        sizeBytes: total,
        chunks: (async function* () {
          for (const p of parts) yield p;
        })(),
      }),
    });
    const b = await member(12n);
    connectAll([a, b]);
    a.transport.send([msgSnap(11n, 12n, new Uint8Array(0))]);
    await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status');
    assert.deepEqual(a.snapshotStatus, [{ id: 12n, ok: true }]);
    assert.ok(b.snapshots[0].data.equals(Buffer.concat(parts)));
  });

  it('reports not ok when the receiver fails to install the snapshot', async () => {
    const a = await member(21n);
    const b = await member(22n, {
      onSnapshot: async () => {
        throw new Error('disk full');
      },
    });
    connectAll([a, b]);
    a.transport.send([msgSnap(21n, 22n, randomBytes(3 * MiB))]);
    await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status');
    assert.deepEqual(a.snapshotStatus, [{ id: 22n, ok: false }]);
    assert.ok(a.logLines.some((l) => l.includes('disk full')), 'the cause reaches the sender log');
    // A failed install is not unreachability.
    assert.deepEqual(a.unreachable, []);
  });

  it('reports not ok when the snapshot exceeds the receiver limit, which never allocates it', async () => {
    const a = await member(31n);
    const b = await member(32n, { maxSnapshotBytes: 2 * MiB });
    connectAll([a, b]);
    a.transport.send([msgSnap(31n, 32n, randomBytes(2 * MiB + 1))]);
    await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status');
    assert.deepEqual(a.snapshotStatus, [{ id: 32n, ok: false }]);
    assert.equal(b.snapshots.length, 0);
    assert.ok(b.logLines.some((l) => l.includes("exceed this member's limit")));
  });

  it('reports not ok, and unreachable, when the peer is down', async () => {
    const a = await member(41n);
    const b = await member(42n);
    connectAll([a, b]);
    await stopMember(b);
    members.splice(members.indexOf(b), 1);
    a.transport.send([msgSnap(41n, 42n, randomBytes(1024))]);
    await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status');
    assert.deepEqual(a.snapshotStatus, [{ id: 42n, ok: false }]);
    assert.ok(a.unreachable.includes(42n));
  });
});
