// Transports on loopback ports: messages arrive whole and in order, one write per peer per turn,
// reconnect after the receiver restarts, cluster ID checked, queues bounded while a peer is down, and
// back-pressure from a slow receiver turns into bigger batches instead of unbounded buffering.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { MessageType, type Message } from '../../src/raft';
import { ERR_CLUSTER_ID_MISMATCH, PEER_MESSAGE_BYTES_MAX } from '../../src/transport';
import type { BidiListener, ClientStreamCall } from '../../src/grpcserver/call';
import { ClientListener } from '../../src/grpcserver/listener';
import { H2GrpcServer } from '../../src/grpcserver/server';
import { ERR_MEMBER_REMOVED, STREAM_PATH, deserializeStreamResponse, serializeBatch, serviceDefinition, type MessageBatchPb } from '../../src/transport/wire';
import { decodeMessages, encodeMessages } from '../../src/transport/codec';
import { CLUSTER_ID, app, connectAll, entry, heartbeat, startMember, startServer, stopMember, waitFor, type Member, type PeerServer } from './helpers';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const indexes = (ms: Message[]): number[] => ms.map((m) => m.index);
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

describe('transport: loopback members', function () {
  this.timeout(15_000);
  const members: Member[] = [];
  const servers: PeerServer[] = [];
  after(async () => {
    await Promise.all(members.map(stopMember));
    await Promise.all(servers.map((s) => s.forceShutdown()));
  });
  const member = async (...args: Parameters<typeof startMember>): Promise<Member> => {
    const m = await startMember(...args);
    members.push(m);
    return m;
  };

  it('two members exchange messages in order, with entry data intact, in both directions', async () => {
    const [a, b] = [await member(1n), await member(2n)];
    connectAll([a, b]);
    const payload = (i: number) => Buffer.from(`entry-${i}-\u0000\u00ff`);
    for (let i = 1; i <= 500; i++) {
      a.transport.send([app(1n, 2n, i, [entry(i, payload(i))])]);
      b.transport.send([heartbeat(2n, 1n, i)]);
      if (i % 50 === 0) await turn();
    }
    await waitFor(() => b.received.length === 500 && a.received.length === 500, 'all 500 messages each way');
    assert.deepEqual(indexes(b.received), range(1, 501));
    assert.deepEqual(a.received.map((m) => m.commit), range(1, 501));
    b.received.forEach((m, i) => {
      assert.equal(m.type, MessageType.MsgApp);
      assert.equal(m.from, 1n);
      assert.ok(Buffer.from(m.entries[0].data).equals(payload(i + 1)));
    });
    assert.equal(a.transport.stats.sentMessages, 500);
  });

  it('connect() opens a stream to a peer with nothing to send (a starting member looks for its peers)', async () => {
    const a = await member(0x51n);
    const b = await member(0x52n);
    connectAll([a, b]);
    assert.equal(a.transport.isConnected(b.id), false, 'no stream before anything is sent');
    a.transport.connect(b.id);
    await waitFor(() => a.transport.isConnected(b.id), 'a stream to b without a message');
    assert.equal(a.transport.stats.sentMessages, 0);
    assert.equal(b.received.length, 0);
  });

  it('three members, each sending to the other two, deliver every stream in order', async () => {
    const ms = [await member(0xffff_ffff_ffff_fff1n), await member(0xffff_ffff_ffff_fff2n), await member(0xffff_ffff_ffff_fff3n)];
    connectAll(ms);
    for (let i = 1; i <= 200; i++) {
      for (const from of ms) for (const to of ms) if (from !== to) from.transport.send([app(from.id, to.id, i)]);
      if (i % 20 === 0) await turn();
    }
    await waitFor(() => ms.every((m) => m.received.length === 400), 'every member got 2 x 200');
    for (const to of ms) {
      for (const from of ms) {
        if (from === to) continue;
        assert.deepEqual(indexes(to.received.filter((m) => m.from === from.id)), range(1, 201), `${from.id} -> ${to.id}`);
      }
    }
  });

  it('everything sent to a peer in one send() goes out as one write, before send() returns', async () => {
    const [a, b] = [await member(11n), await member(12n)];
    connectAll([a, b]);
    a.transport.send([app(11n, 12n, 0)]);
    await waitFor(() => b.received.length === 1, 'stream up');
    const before = { ...a.transport.stats };
    const msgs: Message[] = [];
    for (let i = 1; i <= 300; i++) msgs.push(app(11n, 12n, i), heartbeat(11n, 12n, i));
    a.transport.send(msgs);
    // Already in the socket (the Ready loop starts its own WAL write after send() returns: the
    // followers' copies must not wait for it).
    assert.equal(a.transport.stats.sentBatches - before.sentBatches, 1);
    assert.equal(a.transport.stats.sentMessages - before.sentMessages, 600);
    await waitFor(() => b.received.length === 601, 'the batch');
    assert.equal(b.transport.stats.received, 601);
    assert.deepEqual(indexes(b.received.filter((m) => m.type === MessageType.MsgApp)), range(0, 301));
  });

  it('splits a send() into several writes only above maxBatchBytes', async () => {
    const [a, b] = [await member(21n, { maxBatchBytes: 64 * 1024 }), await member(22n)];
    connectAll([a, b]);
    a.transport.send([heartbeat(21n, 22n, 0)]);
    await waitFor(() => b.received.length === 1, 'stream up');
    const before = a.transport.stats.sentBatches;
    const big = Buffer.alloc(20 * 1024, 7);
    a.transport.send(range(1, 11).map((i) => app(21n, 22n, i, [entry(i, big)]))); // 3 fit in 64 KiB
    await waitFor(() => b.received.length === 11, 'ten big messages');
    assert.equal(a.transport.stats.sentBatches - before, 4);
    assert.deepEqual(indexes(b.received.slice(1)), range(1, 11));
  });

  it('reports the peer unreachable while its server is down and resumes after it restarts on the same port', async () => {
    const [a, b] = [await member(31n), await member(32n)];
    connectAll([a, b]);
    a.transport.send([app(31n, 32n, 1)]);
    await waitFor(() => b.received.length === 1, 'first message');
    await b.server.forceShutdown();
    await waitFor(() => a.unreachable.includes(32n), 'broken stream reported');
    // While down: queued (the bound is far away), redialed with backoff, reported unreachable again.
    for (let i = 2; i <= 5; i++) {
      a.transport.send([app(31n, 32n, i)]);
      await sleep(60);
    }
    const reports = a.unreachable.length;
    assert.ok(reports >= 2, `unreachable reported ${reports} times`);
    const { server } = await startServer(b.transport, b.port);
    b.server = server;
    for (let i = 6; i <= 8; i++) a.transport.send([app(31n, 32n, i)]);
    await waitFor(() => b.received.length === 8, 'messages resume', 5_000);
    // Nothing is written before the receiver accepted the stream, so the outage lost nothing.
    assert.deepEqual(indexes(b.received), range(1, 9));
    assert.ok(a.logLines.some((l) => l.includes('peer stream established again')));
  });

  it('updatePeer moves the stream to the peer\'s new URL without waiting for a backoff', async () => {
    const [a, b] = [await member(71n), await member(72n)];
    connectAll([a, b]);
    a.transport.send([app(71n, 72n, 1)]);
    await waitFor(() => b.received.length === 1, 'first message');
    const { server, port } = await startServer(b.transport); // the member moved to another port
    servers.push(b.server);
    b.server = server;
    a.transport.updatePeer(72n, [`http://127.0.0.1:${port}`]);
    a.transport.send([app(71n, 72n, 2)]);
    await waitFor(() => b.received.length === 2, 'message through the new URL');
    assert.deepEqual(indexes(b.received), [1, 2]);
    assert.deepEqual(a.unreachable, []);
  });

  it('a receiver rejects a sender from another cluster with FAILED_PRECONDITION and logs it', async () => {
    const b = await member(42n);
    const stranger = await member(41n, { clusterId: CLUSTER_ID + 1n });
    stranger.transport.addPeer(42n, [b.url]);
    stranger.transport.send([heartbeat(41n, 42n, 1)]);
    await waitFor(() => stranger.unreachable.includes(42n), 'sender sees the stream fail');
    assert.equal(b.received.length, 0);
    assert.ok(b.logLines.some((l) => l.includes('cluster ID mismatch') && l.includes('"level":"warn"')));
    assert.ok(stranger.logLines.some((l) => l.includes(ERR_CLUSTER_ID_MISMATCH) && l.includes('"level":"error"')));

    // The exact status, seen by a raw client.
    const client = new grpc.Client(`127.0.0.1:${b.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('x-etcd-cluster-id', 'abc');
    md.set('x-server-from', '29');
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.makeClientStreamRequest<MessageBatchPb, unknown>(STREAM_PATH, serializeBatch, deserializeStreamResponse, md, {}, (e) => resolve(e));
      call.write({ messages: encodeMessages([heartbeat(41n, 42n, 1)]) });
      call.end();
    });
    client.close();
    assert.equal(err?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(err?.details, ERR_CLUSTER_ID_MISMATCH);
  });

  it('a receiver that refuses a removed member (FAILED_PRECONDITION, ERR_MEMBER_REMOVED) makes the sender report itself removed', async () => {
    const b = await member(82n, { isRemovedMember: (id) => id === 81n });
    let removed = 0;
    const a = await member(81n, { onRemoved: () => removed++ });
    a.transport.addPeer(82n, [b.url]);
    a.transport.send([heartbeat(81n, 82n, 1)]);
    await waitFor(() => removed > 0, 'onRemoved');
    assert.equal(b.received.length, 0);
    assert.ok(a.logLines.some((l) => l.includes('peer rejected raft stream') && l.includes(ERR_MEMBER_REMOVED)));
  });

  it('drops beyond maxQueuedMessagesPerPeer while the peer is down, and reports it unreachable', async () => {
    // A port that was just bound and released: nothing listens there.
    const { server, port } = await startServer((await member(50n)).transport);
    await server.forceShutdown();
    const a = await member(51n, { maxQueuedMessagesPerPeer: 10 });
    a.transport.addPeer(52n, [`http://127.0.0.1:${port}`]);
    a.transport.send(range(1, 26).map((i) => app(51n, 52n, i)));
    assert.equal(a.transport.stats.dropped, 15);
    assert.deepEqual(a.unreachable, [52n], 'one report for the overflow in this turn');
    await waitFor(() => a.unreachable.length >= 3, 'failed dials reported too');
    a.transport.send([app(51n, 52n, 26), app(51n, 52n, 27)]);
    assert.equal(a.transport.stats.dropped, 17);
    assert.equal(a.transport.stats.sentBatches, 0);
    // Unknown peers are dropped, not queued.
    a.transport.send([app(51n, 99n, 1)]);
    assert.equal(a.transport.stats.dropped, 18);
  });

  it('respects back-pressure from a receiver that stops reading: waits for drain and batches meanwhile', async () => {
    // A raw receiver that accepts the stream and then does not read for a while.
    const got: Message[] = [];
    const slow = new H2GrpcServer({ maxReceiveBytes: PEER_MESSAGE_BYTES_MAX });
    let resume: () => void = () => undefined;
    slow.addService(serviceDefinition(), {
      Stream: (call: ClientStreamCall<Record<string, never>>): BidiListener<MessageBatchPb> => {
        call.sendHeaders();
        call.holdRequests();
        resume = () => call.releaseRequests();
        return { message: (b) => got.push(...decodeMessages(b.messages)), halfClosed: () => call.respond({}) };
      },
      Snapshot: (call: ClientStreamCall<unknown>): BidiListener<unknown> => {
        call.fail({ code: grpc.status.UNIMPLEMENTED, message: 'no snapshots here' });
        return { message: () => undefined, halfClosed: () => undefined };
      },
    });
    const slowListener = new ClientListener({ grpc: slow });
    const [port] = await slowListener.listen(['http://127.0.0.1:0']);
    servers.push({ grpc: slow, listener: slowListener, forceShutdown: () => slowListener.close(0) });
    const a = await member(61n, { maxQueuedMessagesPerPeer: 100_000 });
    a.transport.addPeer(62n, [`http://127.0.0.1:${port}`]);
    const big = Buffer.alloc(64 * 1024, 1);
    a.transport.send([app(61n, 62n, 1, [entry(1, big)])]);
    await waitFor(() => a.logLines.some((l) => l.includes('peer stream established')), 'stream accepted');
    assert.equal(a.transport.stats.sentBatches, 1);
    const turns = 300; // ~19 MiB: far beyond HTTP/2 windows and gRPC's write buffer
    for (let i = 2; i <= turns; i++) {
      a.transport.send([app(61n, 62n, i, [entry(i, big)])]);
      await turn();
    }
    await sleep(200);
    // Without back-pressure every turn would have been one write (300 batches).
    assert.ok(a.transport.stats.sentBatches < 100, `sender kept writing every turn (${a.transport.stats.sentBatches} batches)`);
    assert.equal(a.transport.stats.dropped, 0);
    resume();
    await waitFor(() => got.length === turns, 'everything after resume', 10_000);
    assert.deepEqual(indexes(got), range(1, turns + 1));
    assert.ok(a.transport.stats.sentBatches < turns, `waiting for drain coalesced turns (${a.transport.stats.sentBatches} batches)`);
  });
});
