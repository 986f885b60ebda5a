// One-line descriptions of raft values for golden traces, in etcd-io/raft's trace format
// (util.go DescribeMessage/DescribeReady) so that an etcd engineer reads them without a glossary:
//
//   1->2 MsgApp Term:1 Log:1/11 Commit:11 Entries:[1/12 EntryNormal "data"]
//
// Log:T/I is (logTerm, index): for MsgApp the entry preceding Entries, for MsgAppResp the
// acknowledged index (or the rejected one, with the follower's hint).

import { ConfChangeType, decodeConfChange, EntryType, MessageType, None, ProgressState } from '../../../src/raft';
import type { ConfChange, ConfState, Entry, HardState, Message, Progress, ReadState, Ready, Snapshot, SoftState } from '../../../src/raft';

/** Bytes as a Go-style quoted string: printable ASCII as is, everything else escaped. */
export function quote(b: Uint8Array): string {
  let s = '"';
  for (const c of b) {
    if (c === 0x22 || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return s + '"';
}

const CC_PREFIX: Record<ConfChangeType, string> = {
  [ConfChangeType.AddNode]: 'v',
  [ConfChangeType.AddLearnerNode]: 'l',
  [ConfChangeType.RemoveNode]: 'r',
};

/** A conf change in the short form propose-conf-change takes: v4 (add/promote voter), l4 (learner), r4 (remove). */
export function describeConfChange(cc: ConfChange): string {
  return `${CC_PREFIX[cc.type]}${cc.nodeId}`;
}

export function parseConfChange(tok: string): ConfChange {
  const m = /^([vlr])(\d+)$/.exec(tok);
  if (m === null) throw new Error(`bad conf change ${JSON.stringify(tok)}: want v<id>, l<id> or r<id>`);
  const type = m[1] === 'v' ? ConfChangeType.AddNode : m[1] === 'l' ? ConfChangeType.AddLearnerNode : ConfChangeType.RemoveNode;
  return { type, nodeId: BigInt(m[2]!) };
}

export function describeEntry(e: Entry): string {
  if (e.type === EntryType.ConfChange) return `${e.term}/${e.index} EntryConfChange ${describeConfChange(decodeConfChange(e.data))}`;
  return `${e.term}/${e.index} EntryNormal ${quote(e.data)}`;
}

export function describeHardState(hs: HardState): string {
  return `Term:${hs.term}${hs.vote !== None ? ` Vote:${hs.vote}` : ''} Commit:${hs.commit}`;
}

export function describeSoftState(ss: SoftState): string {
  return `Lead:${ss.lead} State:State${ss.role}`;
}

export function describeConfState(cs: ConfState): string {
  return `Voters:[${cs.voters.join(' ')}] Learners:[${cs.learners.join(' ')}]`;
}

export function describeSnapshot(s: Snapshot): string {
  const md = s.metadata;
  return `Index:${md.index} Term:${md.term} ConfState:${describeConfState(md.confState)}`;
}

export function describeReadState(rs: ReadState): string {
  return `Index:${rs.index} Ctx:${quote(rs.ctx)}`;
}

/** A message on one line (a snapshot it carries goes on a second, indented line). */
export function describeMessage(m: Message): string {
  let s = `${m.from}->${m.to} ${MessageType[m.type]} Term:${m.term} Log:${m.logTerm}/${m.index}`;
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.commit !== 0) s += ` Commit:${m.commit}`;
  if (m.context !== undefined && m.context.byteLength > 0) s += ` Context:${quote(m.context)}`;
  if (m.entries.length > 0) s += ` Entries:[${m.entries.map(describeEntry).join(', ')}]`;
  if (m.snapshot !== undefined) s += `\n  Snapshot: ${describeSnapshot(m.snapshot)}`;
  return s;
}

/**
 * A Ready as etcd's DescribeReady prints it: only the parts that are set. `held` are the messages
 * raft queued that this Ready does not hand out: responses that promise durable state (and, when
 * the term or vote changed, every message) wait for advance() (docs/raft.md, the Ready contract);
 * they go out in the next Ready, and those addressed to the node itself are stepped by advance().
 */
export function describeReady(rd: Ready, held: readonly Message[] = []): string[] {
  const out: string[] = [];
  if (rd.softState !== undefined) out.push(describeSoftState(rd.softState));
  if (rd.hardState !== undefined) out.push(`HardState ${describeHardState(rd.hardState)}`);
  if (rd.readStates.length > 0) out.push(`ReadStates: ${rd.readStates.map(describeReadState).join(', ')}`);
  if (rd.entries.length > 0) out.push('Entries:', ...rd.entries.map(describeEntry));
  if (rd.snapshot !== undefined) out.push(`Snapshot ${describeSnapshot(rd.snapshot)}`);
  if (rd.committedEntries.length > 0) out.push('CommittedEntries:', ...rd.committedEntries.map(describeEntry));
  if (rd.messages.length > 0) out.push('Messages:', ...rd.messages.flatMap((m) => describeMessage(m).split('\n')));
  if (held.length > 0) out.push('Held until advance:', ...held.flatMap((m) => describeMessage(m).split('\n')));
  if (out.length === 0) return ['<empty Ready>'];
  return [`Ready MustSync=${rd.mustSync}:`, ...out];
}

/** A follower's progress as the leader tracks it (etcd tracker.Progress.String()). */
export function describeProgress(pr: Progress): string {
  let s = `State${pr.state} match=${pr.match} next=${pr.next}`;
  if (pr.isLearner) s += ' learner';
  if (pr.isPaused()) s += ' paused';
  if (pr.state === ProgressState.Snapshot) s += ` pendingSnap=${pr.pendingSnapshot}`;
  if (!pr.recentActive) s += ' inactive';
  const inflight = pr.inflights.size();
  if (inflight > 0) s += ` inflight=${inflight}${pr.inflights.full() ? '[full]' : ''}`;
  return s;
}
