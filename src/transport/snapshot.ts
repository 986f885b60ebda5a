// The snapshot stream: one client-streaming Snapshot call per snapshot. The sender writes a header
// chunk (the MsgSnap message without data, and the data size), then the data in chunks; memory on the
// sender is bounded by chunkBytes * maxChunksInFlight (chunks of an in-memory snapshot are views, each
// copied once into its gRPC frame). The receiver checks the size against its limit before accepting any
// data, copies chunks into one buffer of exactly that size, and answers only after onSnapshot resolved.

import * as grpc from '@grpc/grpc-js';
import { MessageType, type Message } from '../raft';
import { assert } from '../util/assert';
import { encodeMessages, decodeMessages } from './codec';
import { SNAPSHOT_PATH, deserializeSnapshotResponse, serializeChunk, type SnapshotChunkPb, type SnapshotResponsePb } from './wire';

/** Snapshot data to send: the bytes themselves, or a stream of chunks of a known total size. */
export type SnapshotSource = Uint8Array | { sizeBytes: number; chunks: AsyncIterable<Uint8Array> };

export const SNAPSHOT_CHUNK_BYTES_DEFAULT = 1024 * 1024;
/** Chunks written to gRPC but not yet flushed to the socket; bounds sender memory. */
export const SNAPSHOT_CHUNKS_IN_FLIGHT_MAX = 4;

const EMPTY = Buffer.alloc(0);

export interface SendSnapshotArgs {
  client: grpc.Client;
  metadata: grpc.Metadata;
  message: Message;
  source: SnapshotSource;
  chunkBytes: number;
  signal: AbortSignal;
}

/** Sends one snapshot; resolves with the index the receiver accepted, rejects on any failure. */
export function sendSnapshot(args: SendSnapshotArgs): Promise<number> {
  const { message, source, chunkBytes, signal } = args;
  assert(message.type === MessageType.MsgSnap && message.snapshot !== undefined, 'sendSnapshot: not a MsgSnap with a snapshot');
  assert(chunkBytes > 0, 'sendSnapshot: chunkBytes must be positive');
  const sizeBytes = source instanceof Uint8Array ? source.byteLength : source.sizeBytes;
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
      while (inFlight >= SNAPSHOT_CHUNKS_IN_FLIGHT_MAX && !ended && writeErr === undefined) {
        await new Promise<void>((r) => (wake = r));
      }
      if (writeErr !== undefined) throw writeErr;
    };

    const pump = async (): Promise<void> => {
      await write({ message: header, totalSizeBytes: sizeBytes, data: EMPTY });
      let sentBytes = 0;
      for await (const piece of chunksOf(source, chunkBytes)) {
        if (ended || signal.aborted) return; // the status callback has settled the promise
        sentBytes += piece.byteLength;
        if (sentBytes > sizeBytes) throw new Error(`snapshot source yielded more than its ${sizeBytes} bytes`);
        await write({ message: EMPTY, totalSizeBytes: 0, data: piece as Buffer });
      }
      if (sentBytes !== sizeBytes) throw new Error(`snapshot source yielded ${sentBytes} of ${sizeBytes} bytes`);
      call.end();
    };
    pump().then(
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

/** Receiver-side state of one incoming snapshot. */
export class SnapshotAssembler {
  private message: Message | undefined;
  private data: Buffer | undefined;
  private receivedBytes = 0;
  private receivedChunks = 0;

  constructor(private readonly maxSnapshotBytes: number) {}

  /** Accepts the next chunk; throws SnapshotRejected with the gRPC code to answer on bad input. */
  add(chunk: SnapshotChunkPb): void {
    if (this.message === undefined) {
      this.message = this.header(chunk);
      this.data = Buffer.allocUnsafe(chunk.totalSizeBytes);
    } else if (chunk.message.length > 0) {
      throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, 'snapshot: message header repeated in a data chunk');
    }
    const data = this.data;
    assert(data !== undefined, 'snapshot: buffer allocated with the header');
    if (this.receivedBytes + chunk.data.length > data.length) {
      throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, `snapshot: more data than the announced ${data.length} bytes`);
    }
    chunk.data.copy(data, this.receivedBytes);
    this.receivedBytes += chunk.data.length;
    this.receivedChunks++;
  }

  /** The whole snapshot, once every announced byte arrived: the message (snapshot.data set) and data. */
  finish(): { message: Message; data: Buffer } {
    const m = this.message;
    const data = this.data;
    if (m === undefined || data === undefined) throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, 'snapshot: stream ended before its header');
    if (this.receivedBytes !== data.length) {
      throw new SnapshotRejected(grpc.status.INVALID_ARGUMENT, `snapshot: truncated at ${this.receivedBytes} of ${data.length} bytes`);
    }
    assert(m.snapshot !== undefined, 'snapshot: header checked to carry metadata');
    m.snapshot = { data, metadata: m.snapshot.metadata };
    return { message: m, data };
  }

  get bytes(): number {
    return this.receivedBytes;
  }

  /** Chunks received, the header chunk included. */
  get chunks(): number {
    return this.receivedChunks;
  }

  private header(chunk: SnapshotChunkPb): Message {
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
    if (chunk.totalSizeBytes > this.maxSnapshotBytes) {
      throw new SnapshotRejected(
        grpc.status.RESOURCE_EXHAUSTED,
        `snapshot: ${chunk.totalSizeBytes} bytes exceed this member's limit of ${this.maxSnapshotBytes}`,
      );
    }
    return m;
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
