// Public surface of the Raft core. See docs/raft.md and the Ready contract in rawnode.ts.

export { RawNode } from './rawnode';
export type { Ready, Status } from './rawnode';
export type { Config, RaftBugs, ReadOnlyOption } from './config';
export { RaftConfigError } from './config';
export { MemoryStorage } from './storage';
export type { Storage, InitialState } from './storage';
export { RaftError, ErrProposalDropped, ErrStepLocalMsg, ErrStepPeerNotFound } from './errors';
export type { StorageErr } from './errors';
export { ProgressState } from './progress';
export type { Progress } from './progress';
export {
  None,
  ENTRY_OVERHEAD_BYTES,
  EntryType,
  MessageType,
  StateRole,
  ConfChangeType,
  encodeConfChange,
  decodeConfChange,
  describeMessage,
  isLocalMsg,
  isResponseMsg,
  newMessage,
} from './types';
export type {
  NodeId,
  Term,
  Index,
  Entry,
  Message,
  HardState,
  SoftState,
  ConfState,
  ConfChange,
  Snapshot,
  SnapshotMetadata,
  ReadState,
} from './types';
