// Codec benchmark: one MsgApp batch of 1,000 entries x 256 B, encoded and decoded by
// (a) src/transport/codec.ts and (b) protobufjs with a raftpb-like schema (the alternative we did not
// ship). Run: npx tsc -p . && node dist/test/transport/codec_bench.js
import protobuf from 'protobufjs';
import { EntryType, MessageType, newMessage, type Message } from '../../src/raft';
import { decodeMessages, encodeMessages } from '../../src/transport';

const RAFTPB = `
syntax = "proto3";
package bench;
message Entry { uint64 term = 1; uint64 index = 2; int32 type = 3; bytes data = 4; }
message ConfState { repeated uint64 voters = 1; repeated uint64 learners = 2; }
message SnapshotMetadata { ConfState conf_state = 1; uint64 index = 2; uint64 term = 3; }
message Snapshot { bytes data = 1; SnapshotMetadata metadata = 2; }
message Message {
  int32 type = 1; uint64 to = 2; uint64 from = 3; uint64 term = 4; uint64 log_term = 5; uint64 index = 6;
  repeated Entry entries = 7; uint64 commit = 8; Snapshot snapshot = 9; bool reject = 10; uint64 reject_hint = 11;
  bytes context = 12;
}
message Batch { repeated Message messages = 1; }
`;

const ENTRIES = 1000;
const ENTRY_BYTES = 256;
const ITER = 2000;

function batch(): Message[] {
  const entries = Array.from({ length: ENTRIES }, (_, i) => ({
    term: 7,
    index: 100_000 + i,
    type: EntryType.Normal,
    data: Buffer.alloc(ENTRY_BYTES, i & 0xff),
  }));
  return [newMessage({ type: MessageType.MsgApp, from: 0x8e9e05c52164694dn, to: 0x91bc3c398fb3c146n, term: 7, logTerm: 7, index: 99_999, commit: 99_990, entries })];
}

function time(label: string, fn: () => void, bytes: number): void {
  for (let i = 0; i < 200; i++) fn(); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ITER; i++) fn();
  const us = Number(process.hrtime.bigint() - t0) / 1000 / ITER;
  console.log(`${label.padEnd(28)} ${us.toFixed(1).padStart(8)} us/batch  ${((bytes / us) * 1e6 / 2 ** 20).toFixed(0).padStart(6)} MiB/s`);
}

function main(): void {
  const msgs = batch();
  const ours = encodeMessages(msgs);
  time('codec.ts encode', () => encodeMessages(msgs), ours.length);
  time('codec.ts decode', () => decodeMessages(ours), ours.length);

  const root = protobuf.parse(RAFTPB, { keepCase: true }).root;
  const Batch = root.lookupType('bench.Batch');
  // protobufjs needs its own object shape (Long-compatible numbers, string-free bigints); converting is
  // part of the cost a real implementation would pay, so it is inside the timed function.
  const toPb = (ms: Message[]) => ({
    messages: ms.map((m) => ({
      type: m.type, to: (protobuf.util.Long as unknown as { fromString(s: string, u: boolean): protobuf.Long }).fromString(m.to.toString(), true), from: (protobuf.util.Long as unknown as { fromString(s: string, u: boolean): protobuf.Long }).fromString(m.from.toString(), true),
      term: m.term, log_term: m.logTerm, index: m.index, commit: m.commit, reject: m.reject, reject_hint: m.rejectHint,
      entries: m.entries.map((e) => ({ term: e.term, index: e.index, type: e.type, data: e.data })),
    })),
  });
  const pb = Batch.encode(toPb(msgs)).finish();
  time('protobufjs encode', () => Batch.encode(toPb(msgs)).finish(), pb.length);
  time('protobufjs decode', () => {
    const b = Batch.decode(pb) as unknown as { messages: { to: protobuf.Long; from: protobuf.Long; entries: { term: protobuf.Long | number; index: protobuf.Long | number; data: Uint8Array }[] }[] };
    for (const m of b.messages) {
      BigInt(m.to.toString());
      BigInt(m.from.toString());
      for (const e of m.entries) Number(e.index);
    }
  }, pb.length);
  console.log(`sizes: codec.ts ${ours.length} B, protobuf ${pb.length} B (payload ${ENTRIES * ENTRY_BYTES} B)`);
}

main();
