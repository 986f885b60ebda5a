// Cluster membership as the apply path sees it: every member's ID, name, peer and client URLs and
// learner flag, plus the IDs of removed members (who must never come back). Changed only by
// applied log entries (Raft conf changes, and attribute/URL updates), so every member agrees.
import { assert } from '../util/assert';
import { computeMemberId } from '../util/ids';
import type { ConfState } from '../raft';

export interface Member {
  id: bigint;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

/** JSON form of a member (IDs as decimal strings: they are uint64). Carried in conf change
 *  contexts and stored in the backend. */
export interface MemberJson {
  id: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

export function memberToJson(m: Member): MemberJson {
  return { id: m.id.toString(), name: m.name, peerURLs: [...m.peerURLs], clientURLs: [...m.clientURLs], isLearner: m.isLearner };
}

export function memberFromJson(j: MemberJson): Member {
  assert(typeof j.id === 'string' && /^[0-9]+$/.test(j.id), 'member json: bad id');
  return { id: BigInt(j.id), name: j.name ?? '', peerURLs: j.peerURLs ?? [], clientURLs: j.clientURLs ?? [], isLearner: !!j.isLearner };
}

/** A member's backend record (NS_MEMBER, storage/backend/records.ts): its JSON. */
export function memberRecord(m: Member): Buffer {
  return Buffer.from(JSON.stringify(memberToJson(m)));
}

/** The membership the backend holds: member records (memberRecord) and removed member IDs. */
export function membershipFromRecords(members: readonly Buffer[], removed: Iterable<bigint>): Membership {
  return new Membership(members.map((b) => memberFromJson(JSON.parse(b.toString('utf8')) as MemberJson)), removed);
}

/** Members of a new cluster from --initial-cluster (name → peer URLs), with etcd-style IDs. */
export function initialMembers(initialCluster: Map<string, string[]>, token: string): Member[] {
  const out: Member[] = [];
  for (const [name, peerURLs] of initialCluster) {
    out.push({ id: computeMemberId(peerURLs, token), name, peerURLs: [...peerURLs].sort(), clientURLs: [], isLearner: false });
  }
  out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const ids = new Set(out.map((m) => m.id));
  assert(ids.size === out.length, 'initial cluster has two members with the same peer URLs');
  return out;
}

export class Membership {
  readonly members = new Map<bigint, Member>();
  readonly removed = new Set<bigint>();

  constructor(members: Iterable<Member> = [], removed: Iterable<bigint> = []) {
    for (const m of members) this.members.set(m.id, m);
    for (const id of removed) this.removed.add(id);
  }

  list(): Member[] {
    return [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: bigint): Member | undefined {
    return this.members.get(id);
  }

  confState(): ConfState {
    const voters: bigint[] = [];
    const learners: bigint[] = [];
    for (const m of this.list()) (m.isLearner ? learners : voters).push(m.id);
    return { voters, learners };
  }

  /** The member whose peer URLs include one of `urls`, if any. */
  byPeerURL(urls: readonly string[]): Member | undefined {
    for (const m of this.members.values()) if (m.peerURLs.some((u) => urls.includes(u))) return m;
    return undefined;
  }

  add(m: Member): void {
    this.members.set(m.id, { ...m, peerURLs: [...m.peerURLs], clientURLs: [...m.clientURLs] });
  }

  remove(id: bigint): void {
    this.members.delete(id);
    this.removed.add(id);
  }

  promote(id: bigint): void {
    const m = this.members.get(id);
    if (m) m.isLearner = false;
  }

  setPeerURLs(id: bigint, urls: string[]): void {
    const m = this.members.get(id);
    if (m) m.peerURLs = [...urls].sort();
  }

  setAttributes(id: bigint, name: string, clientURLs: string[]): void {
    const m = this.members.get(id);
    if (m) {
      m.name = name;
      m.clientURLs = [...clientURLs];
    }
  }
}
