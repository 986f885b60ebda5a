// The snapshot stream: a snapshot arrives byte-exact through onSnapshot, chunk by chunk, and the
// sender learns the outcome (ok, receiver failed to install, receiver over its limit). Streams of
// unknown size are bounded by the receiver's limit as they arrive; a slow receiver slows the sender
// (bounded window); a second MsgSnap to a peer while one streams is coalesced.
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
    assert.equal(m.snapshot?.data.length, 0, 'the data comes as a stream, not inside the message');
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

  it('streams a snapshot of unknown size; the sender reads no further ahead than its window while the receiver is slow', async () => {
    const chunkBytes = 64 * 1024;
    const pieces = 200; // 12.5 MiB in all
    let produced = 0;
    let consumed = 0;
    let aheadMax = 0;
    const a = await member(51n, {
      snapshotChunkBytes: chunkBytes,
      getSnapshotData: async () => ({
        chunks: (async function* () {
          for (let i = 0; i < pieces; i++) {
            produced += chunkBytes;
            aheadMax = Math.max(aheadMax, produced - consumed);
            yield Buffer.alloc(chunkBytes, i & 0xff);
          }
        })(),
      }),
    });
    const b = await member(52n, {
      onSnapshot: async (_m, data) => {
        let i = 0;
        for await (const piece of data) {
          assert.ok(piece.every((x) => x === (i & 0xff)) || piece.length < chunkBytes, 'bytes in order');
          consumed += piece.length;
          i = Math.floor(consumed / chunkBytes);
          if (i % 20 === 0) await new Promise((r) => setTimeout(r, 20)); // a slow disk
        }
        b.snapshots.push({ m: _m, data: Buffer.alloc(0) });
      },
    });
    connectAll([a, b]);
    a.transport.send([msgSnap(51n, 52n, new Uint8Array(0))]);
    await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status', 10_000);
    assert.deepEqual(a.snapshotStatus, [{ id: 52n, ok: true }]);
    assert.equal(consumed, pieces * chunkBytes);
    // gRPC's stream buffers (HTTP/2 windows, the readable's queue) plus the 4 chunks in flight:
    // a few MiB at most, never the whole 12.5 MiB.
    assert.ok(aheadMax < 8 * 1024 * 1024, `sender ran ${aheadMax} bytes ahead of the receiver`);
    assert.ok(b.logLines.some((l) => l.includes('receiving snapshot') && l.includes('"size_bytes":"unknown"')));
  });

  for (const windowBytes of [undefined, 0]) {
    const widened = windowBytes === undefined;
    it(`a receiver that does not read ${widened ? 'still takes its 4 MiB HTTP/2 window (the sender need not wait every 64 KiB), and no more' : 'with HTTP/2\'s 64 KiB window (option 0) takes only its 2 chunks of read-ahead'}`, async () => {
      const chunkBytes = 64 * 1024;
      const pieces = 160; // 10 MiB
      let produced = 0;
      let release: () => void = () => undefined;
      const released = new Promise<void>((r) => (release = r));
      const a = await member(widened ? 61n : 63n, {
        snapshotChunkBytes: chunkBytes,
        getSnapshotData: async () => ({
          chunks: (async function* () {
            for (let i = 0; i < pieces; i++) {
              produced += chunkBytes;
              yield Buffer.alloc(chunkBytes, i & 0xff);
            }
          })(),
        }),
      });
      const b = await member(widened ? 62n : 64n, {
        snapshotReceiveWindowBytes: windowBytes,
        onSnapshot: async (m, data) => {
          await released; // reads nothing until the test has seen how far the sender got
          let n = 0;
          for await (const piece of data) n += piece.length;
          b.snapshots.push({ m, data: Buffer.alloc(n) });
        },
      });
      connectAll([a, b]);
      a.transport.send([msgSnap(a.id, b.id, new Uint8Array(0))]);
      // The receiver's window (4 MiB, or 64 KiB) and the chunks it read ahead
      // (SNAPSHOT_READ_AHEAD_CHUNKS), then the sender's 4 chunks in flight, the one its source has
      // just produced, and what the sender's HTTP/2 client takes before the window (measured:
      // ~1 MiB, the receiver then holding 192 KiB with the 64 KiB window).
      if (widened) await waitFor(() => produced > 4 * MiB, 'the sender past 4 MiB', 8_000);
      await new Promise((r) => setTimeout(r, widened ? 500 : 1_500));
      const ahead = produced;
      release();
      await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status', 10_000);
      assert.deepEqual(a.snapshotStatus, [{ id: b.id, ok: true }]);
      assert.equal(b.snapshots[0].data.length, pieces * chunkBytes);
      const max = (widened ? 4 * MiB : 64 * 1024) + 8 * chunkBytes + 1 * MiB;
      assert.ok(ahead <= max, `sender got ${ahead} bytes ahead (${max} at most)`);
    });
  }

  it('a sender that goes away mid-stream makes the receiver\'s data stream throw (the install aborts)', async () => {
    let produced = 0;
    const a = await member(81n, {
      snapshotChunkBytes: 64 * 1024,
      getSnapshotData: async () => ({
        chunks: (async function* () {
          for (let i = 0; i < 1000; i++) {
            produced++;
            yield Buffer.alloc(64 * 1024, 1);
          }
        })(),
      }),
    });
    let outcome = 'pending';
    let consumed = 0;
    const b = await member(82n, {
      onSnapshot: async (_m, data) => {
        try {
          for await (const piece of data) {
            consumed += piece.length;
            await new Promise((r) => setTimeout(r, 5)); // slower than the sender
          }
          outcome = 'ended normally';
        } catch (err) {
          outcome = `threw: ${(err as Error).message}`;
          throw err;
        }
      },
    });
    connectAll([a, b]);
    a.transport.send([msgSnap(81n, 82n, new Uint8Array(0))]);
    await waitFor(() => consumed > 512 * 1024, 'some data received');
    await stopMember(a);
    members.splice(members.indexOf(a), 1);
    await waitFor(() => outcome !== 'pending', 'the receiver to see the end of the stream');
    assert.match(outcome, /^threw: /);
    assert.ok(produced < 1000, 'the sender stopped reading its source');
  });

  it('refuses a stream of unknown size once it passes the receiver limit', async () => {
    const a = await member(61n, {
      getSnapshotData: async () => ({
        chunks: (async function* () {
          for (let i = 0; i < 4; i++) yield randomBytes(MiB);
        })(),
      }),
    });
    const b = await member(62n, { maxSnapshotBytes: 2 * MiB });
    connectAll([a, b]);
    a.transport.send([msgSnap(61n, 62n, new Uint8Array(0))]);
    await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status');
    assert.deepEqual(a.snapshotStatus, [{ id: 62n, ok: false }]);
    assert.equal(b.snapshots.length, 0);
    assert.ok(b.logLines.some((l) => l.includes("more than this member's limit")));
  });

  it('coalesces a second MsgSnap to a peer while one is streaming, and paces the stream to its rate', async () => {
    const a = await member(71n, { snapshotBytesPerSecondMax: 8 * MiB });
    const b = await member(72n);
    connectAll([a, b]);
    const started = Date.now();
    a.transport.send([msgSnap(71n, 72n, randomBytes(2 * MiB))]);
    a.transport.send([msgSnap(71n, 72n, randomBytes(2 * MiB), 6000)]);
    await waitFor(() => a.snapshotStatus.length === 1, 'snapshot status');
    const tookMs = Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(a.snapshotStatus, [{ id: 72n, ok: true }], 'one stream, one report');
    assert.equal(b.snapshots.length, 1);
    assert.equal(b.snapshots[0].m.snapshot?.metadata.index, 5000);
    assert.ok(a.logLines.some((l) => l.includes('coalesced')));
    // 2 MiB at 8 MiB/s: at least ~250 ms.
    assert.ok(tookMs >= 200, `2 MiB took ${tookMs} ms at 8 MiB/s`);
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
