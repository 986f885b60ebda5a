// A tiny in-process network for scenario tests: nodes, delivery, partitions, persistence per Ready.

import { decodeConfChange, EntryType, MemoryStorage, RawNode, StateRole } from '../../src/raft';
import type { Config, Message, NodeId, ReadState, Entry } from '../../src/raft';

export class Net {
  nodes = new Map<NodeId, RawNode>();
  storages = new Map<NodeId, MemoryStorage>();
  queue: Message[] = [];
  cut = new Set<string>();
  readStates = new Map<NodeId, ReadState[]>();
  applied = new Map<NodeId, Entry[]>();
  /** Drop filter for messages (return true to drop). */
  dropIf: ((m: Message) => boolean) | undefined = undefined;

  constructor(ids: number[], cfg: Partial<Config> = {}, voters = ids) {
    for (const i of ids) this.add(BigInt(i), cfg, MemoryStorage.bootstrap(voters.map(BigInt)));
  }

  add(id: NodeId, cfg: Partial<Config>, storage: MemoryStorage): RawNode {
    const n = new RawNode({ id, electionTick: 10, heartbeatTick: 1, seed: Number(id), ...cfg }, storage);
    this.nodes.set(id, n);
    this.storages.set(id, storage);
    this.readStates.set(id, []);
    this.applied.set(id, []);
    return n;
  }

  node(id: number): RawNode {
    return this.nodes.get(BigInt(id))!;
  }

  isolate(id: number): void {
    for (const other of this.nodes.keys()) {
      if (other === BigInt(id)) continue;
      this.cut.add(`${id}-${other}`);
      this.cut.add(`${other}-${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Processes every Ready of every node (persist, apply, advance); queues their messages. */
  flushReadys(): void {
    for (let more = true; more; ) {
      more = false;
      for (const [id, n] of this.nodes) {
        if (!n.hasReady()) continue;
        more = true;
        const rd = n.ready();
        const st = this.storages.get(id)!;
        if (rd.snapshot) st.applySnapshot(rd.snapshot);
        st.append(rd.entries);
        if (rd.hardState) st.setHardState(rd.hardState);
        for (const e of rd.committedEntries) {
          this.applied.get(id)!.push(e);
          if (e.type === EntryType.ConfChange) {
            const cs = n.applyConfChange(decodeConfChange(e.data));
            // Like the simulation's app: snapshot right after a membership change, so a joining
            // member can be sent a snapshot that includes it.
            if (e.index <= st.lastIndex()) st.createSnapshot(e.index, cs, new Uint8Array(0));
          }
        }
        this.readStates.get(id)!.push(...rd.readStates);
        this.queue.push(...rd.messages);
        n.advance(rd);
      }
    }
  }

  /** Delivers messages until quiet. Returns the messages delivered (for assertions). */
  stabilize(maxRounds = 1000): Message[] {
    const seen: Message[] = [];
    for (let round = 0; round < maxRounds; round++) {
      this.flushReadys();
      if (this.queue.length === 0) return seen;
      const q = this.queue;
      this.queue = [];
      for (const m of q) {
        if (this.cut.has(`${m.from}-${m.to}`)) continue;
        if (this.dropIf?.(m)) continue;
        const to = this.nodes.get(m.to);
        if (to === undefined) continue;
        seen.push(m);
        to.step(m);
        if (m.snapshot !== undefined) this.nodes.get(m.from)?.reportSnapshot(m.to, true);
      }
    }
    throw new Error('network did not stabilize');
  }

  tickAll(n: number): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.tick();
      this.stabilize();
    }
  }

  leader(): RawNode | undefined {
    return [...this.nodes.values()].find((n) => n.raft.state === StateRole.Leader);
  }

  /** Elects node id by campaigning and delivering everything. */
  elect(id: number): RawNode {
    this.node(id).campaign();
    this.stabilize();
    return this.node(id);
  }
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
