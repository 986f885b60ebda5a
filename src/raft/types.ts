// Raft data types: entries, messages, persistent and volatile state, snapshots and membership.
// Names follow etcd-io/raft's raftpb so that an etcd engineer can read traces without a glossary.
//
// Node IDs are uint64 in etcd (member IDs are random 64-bit numbers), so they are `bigint` here: a
// JavaScript number would silently lose precision above 2^53. Terms and indexes are `number`: a
// cluster would need 2^53 entries before that matters.

export type NodeId = bigint;
export type Term = number;
export type Index = number;

/** No node: "no leader" / "no vote". Node IDs are never 0 (etcd's raft.None). */
export const None: NodeId = 0n;

export enum EntryType {
  Normal = 0,
  ConfChange = 1,
}

/** A log entry. Invariant: index >= 1 and term >= 1 for every entry ever appended. */
export interface Entry {
  term: Term;
  index: Index;
  type: EntryType;
  data: Uint8Array;
}

export enum MessageType {
  MsgHup = 0, // local: start an election
  MsgBeat = 1, // local: leader should send heartbeats
  MsgProp = 2, // proposal (local, or forwarded from a follower)
  MsgApp = 3,
  MsgAppResp = 4,
  MsgVote = 5,
  MsgVoteResp = 6,
  MsgSnap = 7,
  MsgHeartbeat = 8,
  MsgHeartbeatResp = 9,
  MsgUnreachable = 10, // local: transport reports a peer unreachable
  MsgSnapStatus = 11, // local: transport reports the result of sending a snapshot
  MsgCheckQuorum = 12, // local: leader checks it heard from a quorum
  MsgTransferLeader = 13,
  MsgTimeoutNow = 14,
  MsgReadIndex = 15,
  MsgReadIndexResp = 16,
  MsgPreVote = 17,
  MsgPreVoteResp = 18,
}

/** Message types that never cross the network. */
export function isLocalMsg(t: MessageType): boolean {
  return (
    t === MessageType.MsgHup ||
    t === MessageType.MsgBeat ||
    t === MessageType.MsgUnreachable ||
    t === MessageType.MsgSnapStatus ||
    t === MessageType.MsgCheckQuorum
  );
}

/** Responses: they carry the responder's term and never start anything on their own. */
export function isResponseMsg(t: MessageType): boolean {
  return (
    t === MessageType.MsgAppResp ||
    t === MessageType.MsgVoteResp ||
    t === MessageType.MsgHeartbeatResp ||
    t === MessageType.MsgUnreachable ||
    t === MessageType.MsgPreVoteResp
  );
}

export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMetadata {
  index: Index;
  term: Term;
  confState: ConfState;
}

/** A snapshot: the application's opaque state at `metadata.index`, plus the membership then. */
export interface Snapshot {
  data: Uint8Array;
  metadata: SnapshotMetadata;
}

/**
 * One message between peers (or a local input). Fields unused by a type are 0 / empty.
 * For MsgApp: (index, logTerm) is the entry preceding `entries`; commit is the leader's commit.
 * For MsgAppResp: index is the last matching index, or on reject the rejected index with
 * rejectHint/logTerm hinting where the follower's log may match (fast backtracking).
 */
export interface Message {
  type: MessageType;
  to: NodeId;
  from: NodeId;
  term: Term;
  logTerm: Term;
  index: Index;
  entries: Entry[];
  commit: Index;
  snapshot?: Snapshot;
  reject: boolean;
  rejectHint: Index;
  context?: Uint8Array;
}

/** Persistent state: must be on disk before any message that depends on it is sent. */
export interface HardState {
  term: Term;
  vote: NodeId;
  commit: Index;
}

export enum StateRole {
  Follower = 'Follower',
  Candidate = 'Candidate',
  Leader = 'Leader',
  PreCandidate = 'PreCandidate',
}

/** Volatile state, reported for information (not persisted). */
export interface SoftState {
  lead: NodeId;
  role: StateRole;
}

/** A ReadIndex result: once the state machine has applied `index`, a read for `ctx` is linearizable. */
export interface ReadState {
  index: Index;
  ctx: Uint8Array;
}

export enum ConfChangeType {
  AddNode = 0, // add a voter, or promote a learner to voter
  RemoveNode = 1,
  AddLearnerNode = 2,
}

/** A single-member change (etcd's ConfChange v1). Carried as the data of an EntryType.ConfChange entry. */
export interface ConfChange {
  type: ConfChangeType;
  nodeId: NodeId;
  context?: Uint8Array;
}

export function emptyHardState(): HardState {
  return { term: 0, vote: None, commit: 0 };
}

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === None && hs.commit === 0;
}

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

export function emptySnapshot(): Snapshot {
  return { data: new Uint8Array(0), metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } } };
}

export function isEmptySnapshot(s: Snapshot | undefined): boolean {
  return s === undefined || s.metadata.index === 0;
}

/** Builds a message with every unused field zeroed; callers set what their type needs. */
export function newMessage(fields: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    to: None,
    from: None,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    ...fields,
  };
}

/** Approximate size in bytes of an entry, used for flow control and batching limits. */
/** What an entry costs beyond its data, in entrySize (its index, term and type). */
export const ENTRY_OVERHEAD_BYTES = 24;

export function entrySize(e: Entry): number {
  return e.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/** The part of entry sizes limited by MaxUncommittedEntriesSize (etcd counts payload only). */
export function payloadSize(e: Entry): number {
  return e.data.byteLength;
}

/** Encodes a ConfChange as entry data: [type:u8][nodeId:u64 BE][context...]. */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const ctx = cc.context ?? new Uint8Array(0);
  const out = new Uint8Array(9 + ctx.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, cc.type);
  view.setBigUint64(1, cc.nodeId);
  out.set(ctx, 9);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.byteLength < 9) throw new Error(`conf change too short: ${data.byteLength} bytes`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const type = view.getUint8(0) as ConfChangeType;
  if (!(type in ConfChangeType)) throw new Error(`unknown conf change type ${type}`);
  const nodeId = view.getBigUint64(1);
  return { type, nodeId, context: data.subarray(9) };
}

/** A short human-readable description of a message, for traces and failure reports. */
export function describeMessage(m: Message): string {
  let s = `${m.from}->${m.to} ${MessageType[m.type]} Term:${m.term} Log:${m.logTerm}/${m.index}`;
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.commit !== 0) s += ` Commit:${m.commit}`;
  if (m.entries.length > 0) s += ` Entries:[${m.entries.map((e) => `${e.term}/${e.index}`).join(' ')}]`;
  if (m.snapshot !== undefined) s += ` Snapshot:${m.snapshot.metadata.index}/${m.snapshot.metadata.term}`;
  return s;
}
