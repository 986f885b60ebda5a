// MemberMetrics without a process: the slow-apply warning, leader changes, heartbeat round trips.
import assert from 'node:assert/strict';
import { MemberMetrics } from '../../src/http/metrics';
import { encodeRequest } from '../../src/server/codec';
import { MessageType, type Message } from '../../src/raft';
import { Logger } from '../../src/util/log';
import type { Server } from '../../src/server/server';

function fakeServer(): Server {
  return {
    memberId: 0xabcn,
    raftStatus: () => ({ leader: 1n, term: 2, lastIndex: 5, commit: 5, isLearner: false }),
    isLeader: () => true,
    appliedIndex: 5,
    pendingProposals: 0,
    durableBackend: undefined,
    store: { keyCount: 3, currentRevision: 4, compactRevision: 0, heapValueBytes: 300, spillBytes: { file: 4096, live: 1024 } },
  } as unknown as Server;
}

const msg = (type: MessageType, from: bigint, to: bigint) => ({ type, from, to }) as unknown as Message;

async function sample(m: MemberMetrics, name: string): Promise<number | undefined> {
  const text = await m.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('member metrics', () => {
  it('an apply slower than 100 ms logs "apply request took too long" with the request kind, and counts it', async () => {
    const lines: string[] = [];
    const m = new MemberMetrics({ server: fakeServer(), log: new Logger('info', {}, (l) => lines.push(l)), serverVersion: '3.4.0' });
    const data = encodeRequest({ id: '1', put: { key: Buffer.from('k'), value: Buffer.from('v'), lease: 0, prev_kv: false, ignore_value: false, ignore_lease: false } });
    m.observeApply(data, 5);
    assert.equal(lines.length, 0);
    m.observeApply(data, 150);
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0]!);
    assert.equal(rec.msg, 'apply request took too long');
    assert.equal(rec.request, 'put');
    assert.equal(rec.took, '150.0ms');
    assert.equal(await sample(m, 'etcd_server_slow_apply_total'), 1);
  });

  it('counts gRPC calls started and handled by code, each once across scrapes', async () => {
    const m = new MemberMetrics({ server: fakeServer(), log: new Logger('error'), serverVersion: '3.4.0' });
    const series = (code?: string) =>
      `grpc_server_${code === undefined ? 'started' : 'handled'}_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"${code === undefined ? '' : `,grpc_code="${code}"`}}`;
    assert.equal(await sample(m, series()), 0);
    assert.equal(await sample(m, series('OK')), 0);
    const a = m.start('/etcdserverpb.KV/Put');
    const b = m.start('/etcdserverpb.KV/Put');
    a(0);
    a(0); // a call ends once
    b(99); // not a gRPC code: counted as Unknown
    assert.equal(await sample(m, series()), 2);
    assert.equal(await sample(m, series('OK')), 1);
    assert.equal(await sample(m, series('Unknown')), 1);
    // A second scrape does not add the same calls again; new calls add to the totals.
    m.start('/etcdserverpb.KV/Put')(3);
    assert.equal(await sample(m, series()), 3);
    assert.equal(await sample(m, series('OK')), 1);
    assert.equal(await sample(m, series('InvalidArgument')), 1);
    assert.equal(await sample(m, series('Unknown')), 1);
    m.start('/no.Such/Method')(0); // not a client API method: not counted, no error
  });

  it('counts changes to a new known leader, not losses of the leader', async () => {
    const m = new MemberMetrics({ server: fakeServer(), log: new Logger('error'), serverVersion: '3.4.0' });
    for (const lead of [1n, 1n, 0n, 1n, 2n]) m.leaderSeen(lead);
    // etcd (raft.go): a soft state whose lead is known and differs from the last one seen counts.
    assert.equal(await sample(m, 'etcd_server_leader_changes_seen_total'), 3);
  });

  it('measures heartbeat round trips per peer and ignores unmatched responses', async () => {
    const m = new MemberMetrics({ server: fakeServer(), log: new Logger('error'), serverVersion: '3.4.0' });
    m.messageReceived(msg(MessageType.MsgHeartbeatResp, 2n, 1n)); // no heartbeat out: ignored
    m.messagesSent([msg(MessageType.MsgHeartbeat, 1n, 2n), msg(MessageType.MsgApp, 1n, 3n)]);
    m.messagesSent([msg(MessageType.MsgHeartbeat, 1n, 2n)]); // still waiting: the older start stands
    await new Promise((r) => setTimeout(r, 5));
    m.messageReceived(msg(MessageType.MsgHeartbeatResp, 2n, 1n));
    m.messageReceived(msg(MessageType.MsgHeartbeatResp, 2n, 1n)); // answered already: ignored
    const text = await m.registry.metrics();
    assert.match(text, /etcd_network_peer_round_trip_time_seconds_count\{To="2"\} 1/);
    const sum = Number(/etcd_network_peer_round_trip_time_seconds_sum\{To="2"\} ([0-9.e-]+)/.exec(text)![1]);
    assert.ok(sum >= 0.004 && sum < 1, String(sum));
  });

  it('reads gauges at scrape time', async () => {
    const m = new MemberMetrics({ server: fakeServer(), log: new Logger('error'), serverVersion: '3.4.0' });
    assert.equal(await sample(m, 'etcd_server_has_leader'), 1);
    assert.equal(await sample(m, 'etcd_debugging_mvcc_keys_total'), 3);
    assert.equal(await sample(m, 'etcd_server_proposals_committed_total'), 5);
    assert.equal(await sample(m, 'quorumkv_mvcc_heap_value_bytes'), 300);
    assert.equal(await sample(m, 'quorumkv_mvcc_spill_file_bytes'), 4096);
    assert.equal(await sample(m, 'quorumkv_mvcc_spill_live_bytes'), 1024);
  });
});
