// Client-streaming calls on our gRPC server (src/grpcserver/server.ts), driven by grpc-js clients
// as the peer transport's senders are: requests delivered in order with the half-close after them,
// response headers sent before the response, back-pressure (a handler that does not pull its
// requests stops the client within the stream's receive window), a method's wider receive window
// (RecvWindow), and a client that goes away failing the handler's pull.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { BidiListener, ClientStreamCall } from '../../src/grpcserver/call';
import { RequestQueue } from '../../src/grpcserver/request_queue';
import { H2GrpcServer } from '../../src/grpcserver/server';
import { until } from '../until';
import {
  SNAPSHOT_PATH,
  STREAM_PATH,
  deserializeSnapshotResponse,
  deserializeStreamResponse,
  serializeBatch,
  serializeChunk,
  serviceDefinition,
  type MessageBatchPb,
  type SnapshotChunkPb,
  type SnapshotResponsePb,
} from '../../src/transport/wire';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK_BYTES = 64 * KiB;


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function chunk(i: number): SnapshotChunkPb {
  return { message: Buffer.alloc(0), totalSizeBytes: 0, data: Buffer.alloc(CHUNK_BYTES, i & 0xff) };
}

describe('H2GrpcServer: client-streaming calls', function () {
  this.timeout(20_000);
  let server: H2GrpcServer;
  let tcp: net.Server;
  let endpoint: string;
  let client: grpc.Client;
  /** Batches the Stream handler got, and what its listener heard. */
  let batches: string[];
  let events: string[];
  /** The Snapshot handler's queue of requests (pulled by the test), and its call. */
  let queue: RequestQueue<SnapshotChunkPb> | undefined;
  let snapshotCall: ClientStreamCall<SnapshotResponsePb> | undefined;

  async function start(snapshotWindow?: { streamBytes: number; connectionBytes: number }): Promise<void> {
    batches = [];
    events = [];
    queue = undefined;
    snapshotCall = undefined;
    server = new H2GrpcServer({ maxReceiveBytes: 4 * MiB });
    server.addService(
      serviceDefinition(),
      {
        Stream: (call: ClientStreamCall<Record<string, never>>): BidiListener<MessageBatchPb> => {
          call.sendHeaders();
          return {
            message: (b) => batches.push(b.messages.toString()),
            halfClosed: () => {
              events.push('halfClosed');
              call.respond({});
            },
            closed: () => events.push(call.cancelled ? 'closed:cancelled' : 'closed'),
          };
        },
        Snapshot: (call: ClientStreamCall<SnapshotResponsePb>): BidiListener<SnapshotChunkPb> => {
          snapshotCall = call;
          queue = new RequestQueue<SnapshotChunkPb>(call, 2, () => new Error('the sender went away'));
          return queue;
        },
      },
      snapshotWindow ? { Snapshot: snapshotWindow } : {},
    );
    tcp = net.createServer((s) => server.injectConnection(s));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    endpoint = `127.0.0.1:${(tcp.address() as net.AddressInfo).port}`;
    client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  }

  afterEach(async () => {
    client.close();
    await server.close(0);
    await new Promise<void>((r) => tcp.close(() => r()));
  });

  /** A Snapshot call writing `n` chunks as fast as grpc-js lets it (4 writes in flight, as the
   *  transport's sender); `sent` counts the writes grpc-js has flushed. */
  function snapshotSender(n: number): { sent: () => number; result: Promise<SnapshotResponsePb>; call: grpc.ClientWritableStream<SnapshotChunkPb> } {
    let sent = 0;
    let call!: grpc.ClientWritableStream<SnapshotChunkPb>;
    const result = new Promise<SnapshotResponsePb>((resolve, reject) => {
      call = client.makeClientStreamRequest<SnapshotChunkPb, SnapshotResponsePb>(SNAPSHOT_PATH, serializeChunk, deserializeSnapshotResponse, new grpc.Metadata(), {}, (err, res) =>
        err ? reject(err) : resolve(res!),
      );
    });
    void (async () => {
      let inFlight = 0;
      let wake: (() => void) | undefined;
      for (let i = 0; i < n; i++) {
        inFlight++;
        call.write(chunk(i), () => {
          inFlight--;
          sent++;
          wake?.();
        });
        while (inFlight >= 4) await new Promise<void>((r) => (wake = r));
      }
      call.end();
    })().catch(() => undefined);
    return { sent: () => sent, result, call };
  }

  /** Pulls every chunk from the handler's queue, checking their order; answers with the count. */
  async function drain(): Promise<number> {
    let i = 0;
    for await (const c of queue!) {
      assert.ok(c.data.length === CHUNK_BYTES && c.data[0] === (i & 0xff), `chunk ${i} in order`);
      i++;
    }
    snapshotCall!.respond({ index: i });
    return i;
  }

  it('delivers the requests in order, then the half-close; response headers go out before the response', async () => {
    await start();
    let headersSeen = false;
    const done = new Promise<void>((resolve, reject) => {
      const call = client.makeClientStreamRequest<MessageBatchPb, Record<string, never>>(STREAM_PATH, serializeBatch, deserializeStreamResponse, new grpc.Metadata(), {}, (err) =>
        err ? reject(err) : resolve(),
      );
      call.on('metadata', () => {
        headersSeen = true;
        for (let i = 0; i < 100; i++) call.write({ messages: Buffer.from(`batch ${i}`) });
        call.end();
      });
    });
    await done;
    assert.ok(headersSeen);
    assert.deepEqual(batches, Array.from({ length: 100 }, (_, i) => `batch ${i}`));
    await until(() => events.length === 2);
    assert.deepEqual(events, ['halfClosed', 'closed']);
  });

  it('a handler that does not pull stops the client within HTTP/2\'s 64 KiB window, then gets every request in order', async () => {
    await start();
    const n = 64; // 4 MiB
    const s = snapshotSender(n);
    await until(() => queue !== undefined && queue.waiting >= 2);
    await sleep(500);
    const ahead = s.sent();
    // Read ahead 2 chunks, the stream's 64 KiB window, the 4 writes grpc-js has in flight.
    assert.ok(ahead * CHUNK_BYTES < 1 * MiB, `the client got ${ahead} chunks ahead of a handler that reads nothing`);
    assert.equal(await drain(), n);
    assert.deepEqual(await s.result, { index: n });
  });

  it('a method\'s receive window (RecvWindow) lets the client that far ahead, and no further', async () => {
    await start({ streamBytes: 2 * MiB, connectionBytes: 2 * MiB });
    const n = 96; // 6 MiB
    const s = snapshotSender(n);
    // grpc-js counts a write as sent once HTTP/2 took it, within the window: the stream's 2 MiB
    // (the chunks read ahead are not credited back below a quarter of it).
    await until(() => s.sent() * CHUNK_BYTES > 1.75 * MiB);
    await sleep(500);
    const ahead = s.sent() * CHUNK_BYTES;
    assert.ok(ahead <= 2 * MiB, `the client got ${ahead} bytes ahead with a 2 MiB window`);
    assert.equal(await drain(), n);
    assert.deepEqual(await s.result, { index: n });
  });

  it('widens the connection window with a WINDOW_UPDATE when such a call starts, and only then', async () => {
    await start({ streamBytes: 2 * MiB, connectionBytes: 3 * MiB });
    const session = http2.connect(`http://${endpoint}`);
    session.on('error', () => undefined);
    try {
      await new Promise<void>((r) => session.once('remoteSettings', () => r()));
      const headers = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' };
      const other = session.request({ ...headers, ':path': STREAM_PATH });
      other.on('error', () => undefined);
      await new Promise<void>((r) => other.once('response', () => r()));
      assert.equal(session.state.remoteWindowSize, 65_535, 'a method without a window leaves the connection at the default');
      const st = session.request({ ...headers, ':path': SNAPSHOT_PATH });
      st.on('error', () => undefined);
      await until(() => session.state.remoteWindowSize === 3 * MiB);
    } finally {
      session.destroy();
    }
  });

  it('a client that goes away fails the handler\'s pull; the call is cancelled', async () => {
    await start();
    const s = snapshotSender(1000);
    s.result.catch(() => undefined);
    await until(() => queue !== undefined && queue.waiting >= 2);
    s.call.cancel();
    await until(() => snapshotCall!.cancelled);
    const err = await drain().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error && err.message === 'the sender went away', String(err));
  });

  it('a response given before the client half-closed ends the call (the rest is not read)', async () => {
    await start();
    const s = snapshotSender(1000);
    await until(() => queue !== undefined && queue.waiting >= 1);
    snapshotCall!.respond({ index: 7 });
    assert.deepEqual(await s.result, { index: 7 });
    assert.ok(s.sent() < 100, `the client sent ${s.sent()} chunks`);
  });

  it('server close ends a client-streaming call at once with UNAVAILABLE', async () => {
    await start();
    const s = snapshotSender(1000);
    s.result.catch(() => undefined);
    await until(() => queue !== undefined && queue.waiting >= 1);
    await server.close(0);
    const err = await s.result.then(
      () => undefined,
      (e: unknown) => e as grpc.ServiceError,
    );
    assert.equal(err?.code, grpc.status.UNAVAILABLE);
  });
});

describe('RequestQueue', () => {
  function fakeCall(): { holds: number; releases: number; holdRequests(): void; releaseRequests(): void } {
    const c = {
      holds: 0,
      releases: 0,
      holdRequests: () => void c.holds++,
      releaseRequests: () => void c.releases++,
    };
    return c;
  }

  it('holds the requests at readAheadMax waiting and releases them when one is pulled', async () => {
    const call = fakeCall();
    const q = new RequestQueue<number>(call, 2, () => new Error('gone'));
    q.message(1);
    assert.equal(call.holds, 0);
    q.message(2);
    assert.equal(call.holds, 1);
    q.message(3); // one already delivered in the same DATA frame: kept, no second hold
    assert.equal(call.holds, 1);
    assert.equal(await q.next(), 1);
    assert.equal(call.releases, 0, 'still 2 waiting');
    assert.equal(await q.next(), 2);
    assert.equal(call.releases, 1);
    q.halfClosed();
    assert.equal(await q.next(), 3);
    assert.equal(await q.next(), undefined);
  });

  it('a pull waiting for the next request fails when the call goes away before the half-close', async () => {
    const q = new RequestQueue<number>(fakeCall(), 1, () => new Error('gone'));
    const pull = q.next();
    q.closed();
    await assert.rejects(pull, /gone/);
  });

  it('the requests delivered before an abort are pulled first; closed() after the half-close is no failure', async () => {
    const q = new RequestQueue<number>(fakeCall(), 4, () => new Error('gone'));
    q.message(1);
    q.abort(new Error('transport closed'));
    assert.equal(await q.next(), 1);
    await assert.rejects(q.next(), /transport closed/);
    const q2 = new RequestQueue<number>(fakeCall(), 4, () => new Error('gone'));
    q2.message(5);
    q2.halfClosed();
    q2.closed();
    assert.deepEqual(await collect(q2), [5]);
  });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
