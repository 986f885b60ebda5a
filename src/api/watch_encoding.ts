// Watch responses built as bytes for the gRPC path. One put watched by N watchers is N responses
// that differ only in watch_id: the event and the response header are encoded once (per event, per
// revision) and each watcher's response is those bytes behind its own watch_id, instead of N object
// trees each converted and encoded by protobufjs (the fan-out's whole cost before; see
// docs/performance.md). Only event deliveries take this path; created/canceled/progress responses
// stay objects. Every transport takes the bytes (call.ts writeEncoded; the JSON gateway decodes
// them to print JSON).
import type protobuf from 'protobufjs';
import { protoRoot } from '../proto';
import type { EventPb, ResponseHeader, WatchResponse } from '../proto/types';
import type { Encoded } from './call';
import { varintBytes, writeVarint } from '../proto/varint';

const TAG_HEADER = (1 << 3) | 2;
const TAG_WATCH_ID = (2 << 3) | 0;
const TAG_EVENTS = (11 << 3) | 2;

let types: { event: protobuf.Type; header: protobuf.Type } | undefined;
function pbTypes(): { event: protobuf.Type; header: protobuf.Type } {
  if (!types) {
    const r = protoRoot();
    types = { event: r.lookupType('mvccpb.Event'), header: r.lookupType('etcdserverpb.ResponseHeader') };
  }
  return types;
}

/** The bytes of one ResponseHeader / Event message (protobuf, no length prefix). */
export function encodeHeader(h: ResponseHeader): Buffer {
  return Buffer.from(pbTypes().header.encode(h as unknown as protobuf.Message).finish());
}

export function encodeEvent(e: EventPb): Buffer {
  return Buffer.from(pbTypes().event.encode(e as unknown as protobuf.Message).finish());
}

/** An etcdserverpb.WatchResponse carrying events: header, watch_id (>= 0), events; every other
 *  field at its default. */
export function encodeEventsResponse(header: Buffer, watchId: number, events: readonly Buffer[]): Encoded<WatchResponse> & Buffer {
  let size = 1 + varintBytes(header.length) + header.length;
  if (watchId !== 0) size += 1 + varintBytes(watchId);
  for (const e of events) size += 1 + varintBytes(e.length) + e.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = TAG_HEADER;
  let off = writeVarint(out, 1, header.length);
  off += header.copy(out, off);
  if (watchId !== 0) {
    out[off++] = TAG_WATCH_ID;
    off = writeVarint(out, off, watchId);
  }
  for (const e of events) {
    out[off++] = TAG_EVENTS;
    off = writeVarint(out, off, e.length);
    off += e.copy(out, off);
  }
  return out as Encoded<WatchResponse> & Buffer;
}
