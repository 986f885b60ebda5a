// The peer codec: every message round-trips exactly (entry data byte for byte, uint64 IDs in full),
// and malformed input from the network is rejected with CodecError instead of being half-decoded.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import protobuf from 'protobufjs';
import { EntryType, MessageType, newMessage, type Message } from '../../src/raft';
import { AssertionError } from '../../src/util/assert';
import { CodecError, decodeMessages, encodeMessages } from '../../src/transport';
import { encodedBatchSize } from '../../src/transport/codec';
import { SNAPSHOT_PATH, STREAM_PATH, deserializeBatch, deserializeChunk, encodeBatchMessage, serializeBatch, serializeChunk } from '../../src/transport/wire';

const MAX_U64 = 2n ** 64n - 1n;
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

function sample(type: MessageType): Message {
  return newMessage({
    type,
    from: MAX_U64,
    to: 0x8000_0000_0000_0001n,
    term: Number.MAX_SAFE_INTEGER,
    logTerm: 2 ** 32 + 7,
    index: 2 ** 40 + 1,
    commit: 12,
    reject: type % 2 === 0,
    rejectHint: 99,
    entries:
      type === MessageType.MsgApp || type === MessageType.MsgProp
        ? [
            { term: 1, index: 2 ** 32, type: EntryType.Normal, data: ALL_BYTES },
            { term: 2, index: 2 ** 32 + 1, type: EntryType.ConfChange, data: new Uint8Array(0) },
            { term: 2, index: 2 ** 32 + 2, type: EntryType.Normal, data: Buffer.from('\u0000binary\u00ff') },
          ]
        : [],
    context: type === MessageType.MsgReadIndex ? Buffer.from([0, 1, 2, 255]) : undefined,
    snapshot:
      type === MessageType.MsgSnap
        ? { data: Buffer.from('snapshot-bytes'), metadata: { index: 1000, term: 4, confState: { voters: [1n, MAX_U64], learners: [2n ** 63n] } } }
        : undefined,
  });
}

/** Normalizes Uint8Array/Buffer differences so deepEqual compares bytes, not classes. */
function plain(m: Message): unknown {
  return {
    ...m,
    entries: m.entries.map((e) => ({ ...e, data: Buffer.from(e.data).toString('hex') })),
    context: m.context === undefined ? undefined : Buffer.from(m.context).toString('hex'),
    snapshot: m.snapshot === undefined ? undefined : { ...m.snapshot, data: Buffer.from(m.snapshot.data).toString('hex') },
  };
}

describe('transport codec', () => {
  it('round-trips every message type with all fields, binary entry data and max uint64 IDs', () => {
    const msgs = Object.values(MessageType)
      .filter((v): v is MessageType => typeof v === 'number')
      .map(sample);
    assert.equal(msgs.length, 19);
    const buf = encodeMessages(msgs);
    assert.equal(buf.length, encodedBatchSize(msgs));
    const back = decodeMessages(buf);
    assert.deepEqual(back.map(plain), msgs.map(plain));
    assert.equal(back[0].from, MAX_U64);
    assert.deepEqual(back[MessageType.MsgSnap].snapshot?.metadata.confState, { voters: [1n, MAX_U64], learners: [2n ** 63n] });
    assert.equal(Buffer.compare(Buffer.from(back[MessageType.MsgApp].entries[0].data), Buffer.from(ALL_BYTES)), 0);
    assert.equal(back[MessageType.MsgApp].entries[1].type, EntryType.ConfChange);
  });

  it('keeps absent optional fields absent and an empty batch empty', () => {
    const [m] = decodeMessages(encodeMessages([newMessage({ type: MessageType.MsgHeartbeat, from: 1n, to: 2n })]));
    assert.equal(m.snapshot, undefined);
    assert.equal(m.context, undefined);
    assert.deepEqual(decodeMessages(encodeMessages([])), []);
  });

  it('round-trips 1,000 entries of 256 random bytes byte for byte', () => {
    const entries = Array.from({ length: 1000 }, (_, i) => ({
      term: 5,
      index: i + 1,
      type: EntryType.Normal,
      data: Uint8Array.from({ length: 256 }, () => Math.floor(Math.random() * 256)),
    }));
    const m = newMessage({ type: MessageType.MsgApp, from: 1n, to: 2n, term: 5, entries });
    const [back] = decodeMessages(encodeMessages([m]));
    assert.equal(back.entries.length, 1000);
    for (let i = 0; i < 1000; i++) assert.ok(Buffer.from(back.entries[i].data).equals(Buffer.from(entries[i].data)), `entry ${i}`);
  });

  it('rejects every truncation of a valid batch with CodecError', () => {
    const buf = encodeMessages([sample(MessageType.MsgApp), sample(MessageType.MsgSnap), sample(MessageType.MsgReadIndex)]);
    for (let n = 0; n < buf.length; n++) assert.throws(() => decodeMessages(buf.subarray(0, n)), CodecError, `prefix of ${n} bytes`);
  });

  it('rejects a wrong version, trailing bytes, unknown types and integers beyond 2^53-1', () => {
    const good = encodeMessages([newMessage({ type: MessageType.MsgHeartbeat, from: 1n, to: 2n, term: 1 })]);
    const bad = (mutate: (b: Buffer) => Buffer) => assert.throws(() => decodeMessages(mutate(Buffer.from(good))), CodecError);
    bad((b) => ((b[0] = 9), b));
    bad((b) => Buffer.concat([b, Buffer.from([0])]));
    bad((b) => ((b[5] = 19), b)); // message type
    bad((b) => ((b[6] = 0x80), b)); // flags
    bad((b) => ((b[5 + 18] = 0x00), (b[5 + 19] = 0x20), b)); // term high word 0x00200000 -> 2^53
    // A count promising more messages than bytes left must fail before allocating.
    bad((b) => (b.writeUInt32BE(0xffff_ffff, 1), b));
  });

  it('refuses to encode values that would not survive the trip (paired with the decoder checks)', () => {
    assert.throws(() => encodeMessages([newMessage({ type: MessageType.MsgApp, index: 2 ** 53 })]), AssertionError);
    assert.throws(() => encodeMessages([newMessage({ type: MessageType.MsgApp, term: -1 })]), AssertionError);
    assert.throws(() => encodeMessages([newMessage({ type: MessageType.MsgApp, to: 2n ** 64n })]), AssertionError);
  });
});

describe('transport wire (proto/quorumkv/raft.proto)', () => {
  const root = new protobuf.Root();
  const protoDir = path.join(__dirname, '..', '..', '..', 'proto');
  root.resolvePath = (_o, t) => path.resolve(protoDir, t);
  root.loadSync('quorumkv/raft.proto', { keepCase: true });
  root.resolveAll();

  it('declares RaftTransport with two client-streaming methods at the paths the transport uses', () => {
    const svc = root.lookupService('quorumkvpb.RaftTransport');
    const stream = svc.methods['Stream'];
    const snap = svc.methods['Snapshot'];
    assert.equal(`/quorumkvpb.RaftTransport/${stream.name}`, STREAM_PATH);
    assert.equal(`/quorumkvpb.RaftTransport/${snap.name}`, SNAPSHOT_PATH);
    assert.deepEqual([stream.requestStream, stream.responseStream, stream.requestType], [true, undefined, 'MessageBatch']);
    assert.deepEqual([snap.requestStream, snap.responseStream, snap.requestType], [true, undefined, 'SnapshotChunk']);
  });

  it('encodes envelopes exactly as protobuf does and decodes payloads without copying', () => {
    const payload = encodeMessages([sample(MessageType.MsgApp)]);
    const wire = serializeBatch({ messages: payload });
    const pb = root.lookupType('quorumkvpb.MessageBatch').decode(wire) as unknown as { messages: Uint8Array };
    assert.ok(Buffer.from(pb.messages).equals(payload));
    const back = deserializeBatch(wire);
    assert.ok(back.messages.equals(payload));
    assert.equal(back.messages.buffer, wire.buffer, 'payload is a view into the frame');

    const chunk = serializeChunk({ message: payload, totalSizeBytes: 2 ** 40, data: Buffer.from([1, 2, 3]) });
    const c = deserializeChunk(chunk);
    assert.equal(c.totalSizeBytes, 2 ** 40);
    assert.deepEqual([...c.data], [1, 2, 3]);
    assert.ok(c.message.equals(payload));
  });

  const app = (entries: Message['entries']): Message => newMessage({ type: MessageType.MsgApp, from: 1n, to: 2n, term: 3, logTerm: 3, index: 8, commit: 8, entries });

  it('encodeBatchMessage gives serializeBatch\'s bytes exactly, with the batch encoded in place (varint lengths of 1-3 bytes)', () => {
    // Entry sizes that put the batch just below and above the varint steps at 2^7 and 2^14 bytes.
    const base = encodedBatchSize([app([])]);
    for (const total of [base, 127, 128, 16_383, 16_384, 300_000]) {
      const dataBytes = Math.max(0, total - base - 21); // 21: an entry's fixed bytes
      const msgs = [app([{ term: 3, index: 9, type: EntryType.Normal, data: Buffer.alloc(dataBytes, 0xab) }])];
      const size = encodedBatchSize(msgs);
      const mine = encodeBatchMessage(msgs, size);
      const theirs = serializeBatch({ messages: encodeMessages(msgs) });
      assert.ok(mine.equals(theirs), `batch of ${size} bytes`);
      assert.deepEqual(decodeMessages(deserializeBatch(mine).messages).map(plain), msgs.map(plain));
    }
    assert.throws(() => encodeBatchMessage([app([])], base + 1), AssertionError, 'a wrong size is a bug, not bytes on the wire');
  });
});
