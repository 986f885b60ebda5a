// ReadOnly: pending ReadIndex requests on the leader (etcd read_only.go).
//
// ReadOnlySafe: a read request records the commit index at arrival, then the leader broadcasts a
// heartbeat carrying the request's context. Once a quorum of voters answers that heartbeat (in the
// current term, since responses from older terms are dropped by Step), no other leader can have
// committed anything newer at the time of the request, so reading state at >= that index is
// linearizable. Requests are answered in arrival order: an ack for a later request confirms
// every earlier one too.

import { assert } from '../util/assert';
import type { Index, Message, NodeId } from './types';

export interface ReadIndexStatus {
  req: Message;
  index: Index;
  acks: Set<NodeId>;
}

export function ctxKey(ctx: Uint8Array): string {
  return Buffer.from(ctx.buffer, ctx.byteOffset, ctx.byteLength).toString('hex');
}

/** Bounded queue: past this many pending reads, new requests are dropped (the client retries). */
export const READ_INDEX_PENDING_MAX = 4096;

export class ReadOnly {
  private pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  /** Registers a read request (m.entries[0].data is its ctx) at commit index `index`. */
  addRequest(index: Index, m: Message): boolean {
    const key = ctxKey(requestCtx(m));
    if (this.pending.has(key)) return true;
    if (this.queue.length >= READ_INDEX_PENDING_MAX) return false;
    this.pending.set(key, { req: m, index, acks: new Set() });
    this.queue.push(key);
    return true;
  }

  /** Records a heartbeat ack for ctx; returns who has acknowledged it (undefined if unknown). */
  recvAck(id: NodeId, ctx: Uint8Array): ReadonlySet<NodeId> | undefined {
    const rs = this.pending.get(ctxKey(ctx));
    if (rs === undefined) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Dequeues every request up to and including ctx's, which are now confirmed. */
  advance(ctx: Uint8Array): ReadIndexStatus[] {
    const key = ctxKey(ctx);
    const k = this.queue.indexOf(key);
    if (k < 0) return [];
    const keys = this.queue.splice(0, k + 1);
    const out: ReadIndexStatus[] = [];
    for (const q of keys) {
      const rs = this.pending.get(q);
      assert(rs !== undefined, 'cannot find corresponding read state from pending map');
      this.pending.delete(q);
      out.push(rs);
    }
    return out;
  }

  /** Context of the newest pending request (carried by heartbeats), if any. */
  lastPendingRequestCtx(): Uint8Array | undefined {
    if (this.queue.length === 0) return undefined;
    const rs = this.pending.get(this.queue[this.queue.length - 1] as string);
    return rs === undefined ? undefined : requestCtx(rs.req);
  }

  pendingCount(): number {
    return this.queue.length;
  }
}

export function requestCtx(m: Message): Uint8Array {
  assert(m.entries.length === 1, 'MsgReadIndex must carry exactly one entry (the ctx)');
  return (m.entries[0] as { data: Uint8Array }).data;
}
