// Loopback cluster helpers for transport tests: a Transport per member, each with its own grpc.Server
// on 127.0.0.1 and an ephemeral port, recording everything it receives.
import * as grpc from '@grpc/grpc-js';
import { EntryType, MessageType, newMessage, type Entry, type Message, type NodeId } from '../../src/raft';
import { Logger } from '../../src/util/log';
import { PEER_SERVER_OPTIONS, Transport, type TransportOptions } from '../../src/transport';

export const CLUSTER_ID = 0xdead_beef_cafe_f00dn;

export interface Member {
  id: NodeId;
  transport: Transport;
  server: grpc.Server;
  port: number;
  url: string;
  received: Message[];
  snapshots: { m: Message; data: Buffer }[];
  unreachable: NodeId[];
  snapshotStatus: { id: NodeId; ok: boolean }[];
  logLines: string[];
}

export async function startServer(transport: Transport, port = 0): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(PEER_SERVER_OPTIONS);
  transport.register(server);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port: bound };
}

export async function startMember(id: NodeId, opts: Partial<TransportOptions> = {}): Promise<Member> {
  const logLines: string[] = [];
  const member = { id, received: [], snapshots: [], unreachable: [], snapshotStatus: [], logLines } as unknown as Member;
  member.transport = new Transport({
    id,
    clusterId: CLUSTER_ID,
    log: new Logger('debug', { member: id.toString() }, (line) => logLines.push(line)),
    onMessage: (m) => member.received.push(m),
    onSnapshot: async (m, data) => {
      const parts: Buffer[] = [];
      for await (const piece of data) parts.push(piece);
      member.snapshots.push({ m, data: Buffer.concat(parts) });
    },
    onUnreachable: (peer) => member.unreachable.push(peer),
    onSnapshotStatus: (peer, ok) => member.snapshotStatus.push({ id: peer, ok }),
    backoff: { initialMs: 20, maxMs: 200 },
    ...opts,
  });
  const { server, port } = await startServer(member.transport);
  member.server = server;
  member.port = port;
  member.url = `http://127.0.0.1:${port}`;
  return member;
}

/** Every member learns every other member's URL. */
export function connectAll(members: Member[]): void {
  for (const a of members) for (const b of members) if (a !== b) a.transport.addPeer(b.id, [b.url]);
}

export async function stopMember(m: Member): Promise<void> {
  await m.transport.close();
  m.server.forceShutdown();
}

export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function entry(index: number, data: Uint8Array, term = 1, type = EntryType.Normal): Entry {
  return { term, index, type, data };
}

/** A MsgApp numbered by `index` so that order can be checked on the other side. */
export function app(from: NodeId, to: NodeId, index: number, entries: Entry[] = []): Message {
  return newMessage({ type: MessageType.MsgApp, from, to, term: 3, logTerm: 3, index, commit: index, entries });
}

export function heartbeat(from: NodeId, to: NodeId, commit: number): Message {
  return newMessage({ type: MessageType.MsgHeartbeat, from, to, term: 3, commit });
}
