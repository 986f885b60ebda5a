// Errors raft returns as values (never thrown): the caller decides whether to retry.

export type RaftErrorCode =
  | 'ProposalDropped' // no leader, leadership transfer in progress, or uncommitted log too large
  | 'StepLocalMsg' // a local-only message type arrived from the network
  | 'StepPeerNotFound'; // a response from a peer that is not in the configuration

export class RaftError extends Error {
  override name = 'RaftError';
  constructor(
    readonly code: RaftErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const ErrProposalDropped = new RaftError('ProposalDropped', 'raft proposal dropped');
export const ErrStepLocalMsg = new RaftError('StepLocalMsg', 'raft: cannot step raft local message');
export const ErrStepPeerNotFound = new RaftError('StepPeerNotFound', 'raft: cannot step as peer not found');

/** Storage lookups outside the retained log: returned as values, never thrown. */
export type StorageErr = 'compacted' | 'unavailable' | 'snapshot-temporarily-unavailable';

export function isStorageErr(x: unknown): x is StorageErr {
  return x === 'compacted' || x === 'unavailable' || x === 'snapshot-temporarily-unavailable';
}
