// Loopback cluster helpers for transport tests: a Transport per member, each with its own peer gRPC
// server (src/grpcserver, as the member's peer port) on 127.0.0.1 and an ephemeral port, recording
// everything it receives.
import { ClientListener } from '../../src/grpcserver/listener';
import { H2GrpcServer } from '../../src/grpcserver/server';
import { EntryType, MessageType, newMessage, type Entry, type Message, type NodeId } from '../../src/raft';
import { Logger } from '../../src/util/log';
import { PEER_MESSAGE_BYTES_MAX, Transport, type TransportOptions } from '../../src/transport';

export const CLUSTER_ID = 0xdead_beef_cafe_f00dn;

export interface Member {
  id: NodeId;
  transport: Transport;
  server: PeerServer;
  port: number;
  url: string;
  received: Message[];
  snapshots: { m: Message; data: Buffer }[];
  unreachable: NodeId[];
  snapshotStatus: { id: NodeId; ok: boolean }[];
  logLines: string[];
}

/** A member's peer port: the gRPC server and its listener. */
export interface PeerServer {
  grpc: H2GrpcServer;
  listener: ClientListener;
  /** Cuts every connection and stops listening. */
  forceShutdown(): Promise<void>;
}

export async function startServer(transport: Transport, port = 0): Promise<{ server: PeerServer; port: number }> {
  const grpc = new H2GrpcServer({ maxReceiveBytes: PEER_MESSAGE_BYTES_MAX });
  transport.register(grpc);
  const listener = new ClientListener({ grpc });
  const [bound] = await listener.listen([`http://127.0.0.1:${port}`]);
  return { server: { grpc, listener, forceShutdown: () => listener.close(0) }, port: bound! };
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
  await m.server.forceShutdown();
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
