// The snapshot stream: one client-streaming Snapshot call per snapshot. The sender writes a header
// chunk (the MsgSnap message without data, and the data size, or "size unknown" for a stream read
// as it goes), then the data in chunks. Memory on each side is bounded by a window, never by the
// snapshot's size:
//   sender    at most SNAPSHOT_CHUNKS_IN_FLIGHT_MAX chunks written to gRPC and not yet flushed to
//             its HTTP/2 stream (whose flow-control window the receiver only opens as it reads),
//             and at most bytesPerSecondMax on average (catch-up must not starve the leader's
//             other traffic: its event loop, disk and socket buffers serve clients too);
//   receiver  chunks are handed to the server one at a time as it asks for them (an async
//             iterable); the call stops being read (its HTTP/2 window stops being credited)
//             while SNAPSHOT_READ_AHEAD_CHUNKS wait for the consumer (grpcserver RequestQueue).
// The receiver answers only after onSnapshot resolved (the snapshot installed or refused).

import * as grpc from '@grpc/grpc-js';
import { MessageType, type Message } from '../raft';
import { assert } from '../util/assert';
import { encodeMessages, decodeMessages } from './codec';
import { SNAPSHOT_PATH, deserializeSnapshotResponse, serializeChunk, type SnapshotChunkPb, type SnapshotResponsePb } from './wire';

/** Snapshot data to send: the bytes themselves, or a stream of chunks (of a known total size, or
 *  of a size known only at its end: sizeBytes undefined). `close` is called once the send ended,
 *  however it ended (the stream may not even have started: a generator that never ran has no
 *  finally block to release what it reads from). */
export type SnapshotSource = Uint8Array | { sizeBytes?: number; chunks: AsyncIterable<Uint8Array>; close?: () => Promise<void> };

export const SNAPSHOT_CHUNK_BYTES_DEFAULT = 1024 * 1024;
/** Chunks written to gRPC but not yet flushed to the socket; bounds sender memory. */
export const SNAPSHOT_CHUNKS_IN_FLIGHT_MAX = 4;
/** Catch-up bandwidth per snapshot stream by default: fast enough to move 1.6 GB in ~13 s (etcd
 *  needed 16 s on this machine), slow enough to leave the loop, disk and network to clients. */
export const SNAPSHOT_BYTES_PER_SECOND_MAX_DEFAULT = 128 * 1024 * 1024;
/**
 * HTTP/2 receive window (connection and stream) of an incoming snapshot. HTTP/2's default is
 * 64 KiB: the sender would wait for a WINDOW_UPDATE every 64 KiB, a wake-up of each side's event loop, which on a loaded machine is milliseconds each.
 * Measured in a 3-member cluster (bench-scale --catch-up-bins, 2 cores at load ~12, the restarted
 * follower alternating builds): the receiver waited 5.2-7.3 s for its stream per 87-137 MB with
 * 64 KiB, 1.1-1.5 s per 112-162 MB with 4 MiB (the sender's window of chunks in flight). The
 * receiver holds at most this many bytes more than before.
 */
export const SNAPSHOT_RECEIVE_WINDOW_BYTES_DEFAULT = 4 * 1024 * 1024;
/** Keeps what a receiver may be sent ahead of its reads small (HTTP/2 allows 2 GiB); at most
 *  grpcserver's RECV_WINDOW_BYTES_MAX. */
export const SNAPSHOT_RECEIVE_WINDOW_BYTES_MAX = 64 * 1024 * 1024;
/** Chunks received and not yet read by the install before the call stops reading (grpc-js's
 *  server read ahead 16 messages). With 1 MiB chunks a receiver that does not read holds 2 MiB
 *  here plus its receive window. */
export const SNAPSHOT_READ_AHEAD_CHUNKS = 2;
/** Longest single pause of the rate limit (it sleeps in steps, checking for cancellation). */
const RATE_SLEEP_MS_MAX = 250;

const EMPTY = Buffer.alloc(0);

export interface SendSnapshotArgs {
  client: grpc.Client;
  metadata: grpc.Metadata;
  message: Message;
  source: SnapshotSource;
  chunkBytes: number;
  signal: AbortSignal;
  /** Average data rate limit (0 or Infinity: none). */
  bytesPerSecondMax?: number;
  /** Filled in as the send goes: where its time went (for the sender's log line). */
  timings?: SendTimings;
}

/** Milliseconds spent waiting for the source's next piece, for the window (chunks in flight to
 *  drain to the socket), and in the rate limit's sleeps. */
export interface SendTimings {
  sourceMs: number;
  windowMs: number;
  paceMs: number;
}

/** Sends one snapshot; resolves with the index the receiver accepted, rejects on any failure. */
export function sendSnapshot(args: SendSnapshotArgs): Promise<number> {
  const { message, source, chunkBytes, signal } = args;
  assert(message.type === MessageType.MsgSnap && message.snapshot !== undefined, 'sendSnapshot: not a MsgSnap with a snapshot');
  assert(chunkBytes > 0, 'sendSnapshot: chunkBytes must be positive');
  const sizeBytes = source instanceof Uint8Array ? source.byteLength : source.sizeBytes;
  const rate = args.bytesPerSecondMax ?? 0;
  assert(rate >= 0, 'sendSnapshot: bytesPerSecondMax must not be negative');
  // The header carries metadata only: the data follows in chunks, never inside the encoded message.
  const header = encodeMessages([{ ...message, snapshot: { data: EMPTY, metadata: message.snapshot.metadata } }]);

  return new Promise<number>((resolve, reject) => {
    let ended = false;
    let wake: (() => void) | undefined;
    const call = args.client.makeClientStreamRequest<SnapshotChunkPb, SnapshotResponsePb>(
      SNAPSHOT_PATH,
      serializeChunk,
      deserializeSnapshotResponse,
      args.metadata,
      {},
      (err, res) => {
        ended = true;
        wake?.();
        if (err) reject(err);
        else if (res === undefined) reject(new Error('snapshot: empty response'));
        else resolve(res.index);
      },
    );
    const onAbort = (): void => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });

    let inFlight = 0;
    let writeErr: Error | undefined;
    const write = async (chunk: SnapshotChunkPb): Promise<void> => {
      inFlight++;
      call.write(chunk, (err: Error | null | undefined) => {
        inFlight--;
        if (err) writeErr = err;
        const w = wake;
        wake = undefined;
        w?.();
      });
      const t0 = performance.now();
      while (inFlight >= SNAPSHOT_CHUNKS_IN_FLIGHT_MAX && !ended && writeErr === undefined) {
        await new Promise<void>((r) => (wake = r));
      }
      if (args.timings !== undefined) args.timings.windowMs += performance.now() - t0;
      if (writeErr !== undefined) throw writeErr;
    };

    const startedMs = Date.now();
    /** Sleeps until `sentBytes` is within the rate limit (or the call ended). */
    const pace = async (sentBytes: number): Promise<void> => {
      if (rate === 0 || !Number.isFinite(rate)) return;
      const t0 = performance.now();
      for (;;) {
        const aheadMs = startedMs + (sentBytes / rate) * 1000 - Date.now();
        if (aheadMs <= 0 || ended || signal.aborted) break;
        await new Promise<void>((r) => setTimeout(r, Math.min(aheadMs, RATE_SLEEP_MS_MAX)));
      }
      if (args.timings !== undefined) args.timings.paceMs += performance.now() - t0;
    };

    const pump = async (): Promise<void> => {
      await write({ message: header, totalSizeBytes: sizeBytes ?? 0, data: EMPTY, sizeUnknown: sizeBytes === undefined });
      let sentBytes = 0;
      const pieces = chunksOf(source, chunkBytes);
      try {
        for (;;) {
          const t0 = performance.now();
          const next = await pieces.next();
          if (args.timings !== undefined) args.timings.sourceMs += performance.now() - t0;
          if (next.done === true) break;
          const piece = next.value;
          if (ended || signal.aborted) return; // the status callback has settled the promise
          sentBytes += piece.byteLength;
          if (sizeBytes !== undefined && sentBytes > sizeBytes) throw new Error(`snapshot source yielded more than its ${sizeBytes} bytes`);
          await write({ message: EMPTY, totalSizeBytes: 0, data: piece as Buffer });
          await pace(sentBytes);
        }
      } finally {
        await pieces.return(undefined); // as a for-await would: the source's own finally blocks run
      }
      if (ended || signal.aborted) return;
      if (sizeBytes !== undefined && sentBytes !== sizeBytes) throw new Error(`snapshot source yielded ${sentBytes} of ${sizeBytes} bytes`);
      call.end();
    };
    const pumped = pump().finally(async () => {
      if (source instanceof Uint8Array || source.close === undefined) return;
      await source.close();
    });
    pumped.then(
      () => signal.removeEventListener('abort', onAbort),
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        call.cancel();
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** Splits the source into pieces of at most chunkBytes without copying (subarray views). */
async function* chunksOf(source: SnapshotSource, chunkBytes: number): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) {
    yield* split(source, chunkBytes);
    return;
  }
  for await (const piece of source.chunks) yield* split(piece, chunkBytes);
}

function* split(u: Uint8Array, chunkBytes: number): Generator<Uint8Array> {
  const b = Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  for (let off = 0; off < b.length; off += chunkBytes) yield b.subarray(off, Math.min(b.length, off + chunkBytes));
}

/**
 * Receiver-side checks of one incoming snapshot, chunk by chunk: the header first (exactly one
 * MsgSnap with metadata; an announced size within the limit), then each data chunk's bytes against
 * the announced size or, for a stream of unknown size, the limit. Holds no data: each chunk goes on
 * to the server as it arrives (Transport.receiveSnapshot).
 */
export class SnapshotReceiver {
  private message: Message | undefined;
  /** Announced data size; undefined for a stream of unknown size. */
  private sizeBytes: number | undefined;
  private receivedBytes = 0;
  private receivedChunks = 0;

  constructor(private readonly maxSnapshotBytes: number) {}

  /** Checks the first chunk; returns its message. Its data (if any) goes through data() next. */
  header(chunk: SnapshotChunkPb): Message {
    assert(this.message === undefined, 'snapshot: header taken twice');
    let msgs: Message[];
    try {
      msgs = decodeMessages(chunk.message);
    } catch (err) {
      throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, `snapshot: bad header: ${(err as Error).message}`);
    }
    const m = msgs[0];
    if (msgs.length !== 1 || m.type !== MessageType.MsgSnap || m.snapshot === undefined) {
      throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, 'snapshot: first chunk must carry exactly one MsgSnap with metadata');
    }
    if (chunk.sizeUnknown !== true && chunk.totalSizeBytes > this.maxSnapshotBytes) {
      throw new SnapshotRejected(
        grpc.status.RESOURCE_EXHAUSTED,
        `snapshot: ${chunk.totalSizeBytes} bytes exceed this member's limit of ${this.maxSnapshotBytes}`,
      );
    }
    this.message = m;
    this.sizeBytes = chunk.sizeUnknown === true ? undefined : chunk.totalSizeBytes;
    this.receivedChunks++;
    return m;
  }

  /** Accounts for the data of a chunk (the header's too) and returns it; throws SnapshotRejected
   *  with the gRPC code to answer on bad input. */
  data(chunk: SnapshotChunkPb, isHeader: boolean): Buffer {
    assert(this.message !== undefined, 'snapshot: data before the header');
    if (!isHeader) {
      if (chunk.message.length > 0) throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, 'snapshot: message header repeated in a data chunk');
      this.receivedChunks++;
    }
    const after = this.receivedBytes + chunk.data.length;
    if (this.sizeBytes !== undefined && after > this.sizeBytes) {
      throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, `snapshot: more data than the announced ${this.sizeBytes} bytes`);
    }
    if (after > this.maxSnapshotBytes) {
      throw new SnapshotRejected(grpc.status.RESOURCE_EXHAUSTED, `snapshot: more than this member's limit of ${this.maxSnapshotBytes} bytes`);
    }
    this.receivedBytes = after;
    return chunk.data;
  }

  /** The stream ended: throws unless every announced byte arrived. */
  finish(): void {
    if (this.message === undefined) throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, 'snapshot: stream ended before its header');
    if (this.sizeBytes !== undefined && this.receivedBytes !== this.sizeBytes) {
      throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, `snapshot: truncated at ${this.receivedBytes} of ${this.sizeBytes} bytes`);
    }
  }

  get bytes(): number {
    return this.receivedBytes;
  }

  /** Chunks received, the header chunk included. */
  get chunks(): number {
    return this.receivedChunks;
  }
}

export class SnapshotRejected extends Error {
  override name = 'SnapshotRejected';
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}
