// The client port's HTTP side against a real quorumkv process, with plain HTTP (fetch): /health,
// /version, /metrics (scraped and parsed) and etcd's JSON gateway under /v3/, on the same port
// that etcdctl reaches over gRPC. Where the real etcd (3.4) is installed, the same requests go to
// it too and the JSON shapes of both answers are compared.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { etcdctl, freePort, hasEtcdctl, startServer, tempDir, type ServerProcess } from '../integration/harness';

const b64 = (s: string) => Buffer.from(s).toString('base64');

interface Reply {
  status: number;
  type: string;
  body: string;
  json: any;  
}

async function post(url: string, p: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const r = await fetch(url + p, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers });
  const text = await r.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: text, json };
}

/** Reads a streamed gateway response line by line until `until` says stop. */
async function stream(url: string, p: string, body: string, until: (lines: any[]) => boolean, onOpen?: () => Promise<void>): Promise<any[]> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), 10_000);
  const r = await fetch(url + p, { method: 'POST', body, signal: ac.signal });
  const lines: any[] = [];
  const reader = r.body!.getReader();
  let buf = '';
  let opened = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += Buffer.from(value).toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
      if (!opened && lines.length > 0 && onOpen) {
        opened = true;
        await onOpen();
      }
      if (until(lines)) break;
    }
  } finally {
    clearTimeout(t);
    ac.abort();
  }
  return lines;
}

/** Prometheus text format → { types: name → type, samples: "name{labels}" → value }. */
function parseMetrics(text: string): { types: Map<string, string>; samples: Map<string, number> } {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name!, type!);
    } else if (line && !line.startsWith('#')) {
      const sp = line.lastIndexOf(' ');
      samples.set(line.slice(0, sp), Number(line.slice(sp + 1)));
    }
  }
  return { types, samples };
}

/** A JSON value with its leaves replaced by their types: what "the same shape" means. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shape);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, shape(x)]));
  return typeof v;
}

function hasEtcd(): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => fs.existsSync(path.join(d, 'etcd')));
}

describe('HTTP on the client port: health, version, metrics and the JSON gateway', function () {
  this.timeout(60_000);
  let srv: ServerProcess;

  before(async () => {
    srv = await startServer();
  });
  after(async () => srv && (await srv.stop()));

  it('/health answers {"health":"true"} with 200 once the member leads, as etcd 3.4', async () => {
    let r: Response | undefined;
    for (let i = 0; i < 50; i++) {
      r = await fetch(srv.url + '/health');
      if (r.status === 200) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(r!.status, 200);
    assert.equal(await r!.text(), '{"health":"true"}');
    assert.equal((await fetch(srv.url + '/health', { method: 'POST' })).status, 405);
  });

  it('/version answers etcd\'s JSON', async () => {
    const r = await fetch(srv.url + '/version');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.deepEqual(await r.json(), { etcdserver: '3.4.0', etcdcluster: '3.4.0' });
  });

  it('gRPC and HTTP share the port: etcdctl writes, the gateway reads', async function () {
    if (!hasEtcdctl()) this.skip();
    assert.equal((await etcdctl(srv.endpoint, ['put', 'shared', 'port'])).code, 0);
    const r = await post(srv.url, '/v3/kv/range', { key: b64('shared') });
    assert.equal(r.status, 200);
    assert.equal(r.json.kvs[0].value, b64('port'));
  });

  it('/metrics: etcd metric names and types, and counters that move with writes', async () => {
    const scrape = async () => {
      const r = await fetch(srv.url + '/metrics');
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
      return parseMetrics(await r.text());
    };
    const before = await scrape();
    const expectTypes: Record<string, string> = {
      etcd_server_has_leader: 'gauge',
      etcd_server_is_leader: 'gauge',
      etcd_server_leader_changes_seen_total: 'counter',
      etcd_server_proposals_committed_total: 'gauge',
      etcd_server_proposals_applied_total: 'gauge',
      etcd_server_proposals_pending: 'gauge',
      etcd_server_proposals_failed_total: 'counter',
      etcd_disk_wal_fsync_duration_seconds: 'histogram',
      etcd_disk_backend_commit_duration_seconds: 'histogram',
      etcd_mvcc_db_total_size_in_bytes: 'gauge',
      etcd_network_peer_round_trip_time_seconds: 'histogram',
      grpc_server_handled_total: 'counter',
      grpc_server_started_total: 'counter',
      etcd_mvcc_put_total: 'counter',
      etcd_debugging_mvcc_keys_total: 'gauge',
      process_cpu_seconds_total: 'counter',
      process_resident_memory_bytes: 'gauge',
    };
    for (const [name, type] of Object.entries(expectTypes)) assert.equal(before.types.get(name), type, `type of ${name}`);
    assert.equal(before.samples.get('etcd_server_has_leader'), 1);
    assert.equal(before.samples.get('etcd_server_is_leader'), 1);
    assert.ok(before.samples.get('etcd_server_leader_changes_seen_total')! >= 1);
    // Every method and code is there from the start, as go-grpc-prometheus does for etcd.
    const putOk = 'grpc_server_handled_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK"}';
    assert.ok(before.samples.has(putOk));
    assert.ok(before.samples.has('grpc_server_handled_total{grpc_type="bidi_stream",grpc_service="etcdserverpb.Watch",grpc_method="Watch",grpc_code="Canceled"}'));

    const n = 5;
    for (let i = 0; i < n; i++) assert.equal((await post(srv.url, '/v3/kv/put', { key: b64(`m${i}`), value: b64('v') })).status, 200);
    assert.equal((await post(srv.url, '/v3/kv/put', { key: '' })).status, 400);
    const after = await scrape();
    const delta = (k: string) => after.samples.get(k)! - (before.samples.get(k) ?? 0);
    assert.equal(delta('etcd_mvcc_put_total'), n);
    assert.equal(delta(putOk), n);
    assert.equal(delta('grpc_server_handled_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="InvalidArgument"}'), 1);
    assert.ok(delta('grpc_server_started_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"}') >= n + 1);
    assert.ok(delta('etcd_server_proposals_applied_total') >= n);
    assert.ok(delta('etcd_disk_wal_fsync_duration_seconds_count') >= 1);
    // The backend writes its commits in groups every 100 ms (etcd's batch interval): wait for one.
    const commits = 'etcd_disk_backend_commit_duration_seconds_count';
    let later = after;
    for (let i = 0; i < 50 && !(later.samples.get(commits)! > (before.samples.get(commits) ?? 0)); i++) {
      await new Promise((r) => setTimeout(r, 50));
      later = await scrape();
    }
    assert.ok(later.samples.get(commits)! - (before.samples.get(commits) ?? 0) >= 1, 'a backend commit after the puts');
    assert.ok(delta('etcd_debugging_mvcc_keys_total') >= n);
    assert.ok(after.samples.get('etcd_mvcc_db_total_size_in_bytes')! > 0);
    // No proposal stays pending. One was in flight at the scrape once, on a loaded machine (which
    // one was not identified), so the gauge is read until it is 0 (bounded).
    let settled = after;
    for (let i = 0; i < 50 && settled.samples.get('etcd_server_proposals_pending') !== 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      settled = await scrape();
    }
    assert.equal(settled.samples.get('etcd_server_proposals_pending'), 0);
  });

  it('KV: put, range (etcd\'s field names, int64 as strings, defaults omitted), deleterange', async () => {
    const put = await post(srv.url, '/v3/kv/put', { key: b64('gw/a'), value: b64('1') });
    assert.equal(put.status, 200);
    assert.equal(put.type, 'application/json');
    assert.deepEqual(Object.keys(put.json), ['header']);
    assert.deepEqual(Object.keys(put.json.header), ['cluster_id', 'member_id', 'revision', 'raft_term']);
    assert.equal(typeof put.json.header.revision, 'string');
    const prev = await post(srv.url, '/v3/kv/put', { key: b64('gw/a'), value: b64('2'), prev_kv: true });
    assert.equal(prev.json.prev_kv.value, b64('1'));
    const range = await post(srv.url, '/v3/kv/range', { key: b64('gw/'), range_end: b64('gw0') });
    assert.equal(range.json.count, '1');
    assert.deepEqual(Object.keys(range.json.kvs[0]), ['key', 'create_revision', 'mod_revision', 'version', 'value']);
    assert.equal(range.json.kvs[0].version, '2');
    assert.equal(range.json.more, undefined);
    // lowerCamelCase names and enum names are accepted, as by etcd's gateway.
    const keysOnly = await post(srv.url, '/v3/kv/range', { key: b64('gw/a'), keysOnly: true, sort_order: 'DESCEND' });
    assert.equal(keysOnly.json.kvs[0].value, undefined);
    const del = await post(srv.url, '/v3/kv/deleterange', { key: b64('gw/a'), prev_kv: true });
    assert.equal(del.json.deleted, '1');
    assert.equal(del.json.prev_kvs[0].value, b64('2'));
    const none = await post(srv.url, '/v3/kv/deleterange', { key: b64('gw/a') });
    assert.equal(none.json.deleted, undefined);
  });

  it('txn and compaction, with etcd\'s error mapping (OutOfRange → 400, code 11)', async () => {
    await post(srv.url, '/v3/kv/put', { key: b64('t'), value: b64('1') });
    const txn = await post(srv.url, '/v3/kv/txn', {
      compare: [{ key: b64('t'), result: 'EQUAL', target: 'VALUE', value: b64('1') }],
      success: [{ request_put: { key: b64('t'), value: b64('2') } }, { requestRange: { key: b64('t') } }],
      failure: [{ request_range: { key: b64('t') } }],
    });
    assert.equal(txn.status, 200);
    assert.equal(txn.json.succeeded, true);
    assert.deepEqual(Object.keys(txn.json.responses[0]), ['response_put']);
    assert.equal(txn.json.responses[1].response_range.kvs[0].value, b64('2'));
    const rev = Number(txn.json.header.revision);
    assert.equal((await post(srv.url, '/v3/kv/compaction', { revision: rev - 1 })).status, 200);
    const again = await post(srv.url, '/v3/kv/compaction', { revision: rev - 1 });
    assert.equal(again.status, 400);
    assert.deepEqual(again.json, { error: 'etcdserver: mvcc: required revision has been compacted', message: 'etcdserver: mvcc: required revision has been compacted', code: 11 });
    const future = await post(srv.url, '/v3/kv/range', { key: b64('t'), revision: String(rev + 1000) });
    assert.equal(future.json.code, 11);
  });

  it('leases: grant, keepalive (streamed), timetolive and leases (and their /v3/kv/lease aliases), revoke', async () => {
    const grant = await post(srv.url, '/v3/lease/grant', { TTL: 60, ID: 4242 });
    assert.equal(grant.status, 200);
    assert.equal(grant.json.ID, '4242');
    assert.equal(grant.json.TTL, '60');
    await post(srv.url, '/v3/kv/put', { key: b64('leased'), value: b64('x'), lease: '4242' });
    const ka = await post(srv.url, '/v3/lease/keepalive', { ID: 4242 });
    assert.equal(ka.status, 200);
    const kaLines = ka.body.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(kaLines.length, 1);
    assert.equal(kaLines[0].result.TTL, '60');
    const gone = await post(srv.url, '/v3/lease/keepalive', { ID: 999 });
    assert.equal(JSON.parse(gone.body.trim()).result.TTL, undefined); // TTL 0: expired or unknown
    const ttl = await post(srv.url, '/v3/kv/lease/timetolive', { ID: '4242', keys: true });
    assert.equal(ttl.json.grantedTTL, '60');
    assert.deepEqual(ttl.json.keys, [b64('leased')]);
    assert.equal((await post(srv.url, '/v3/lease/timetolive', { ID: 999 })).json.TTL, '-1');
    const leases = await post(srv.url, '/v3/lease/leases', {});
    assert.ok(leases.json.leases.some((l: { ID: string }) => l.ID === '4242'));
    assert.deepEqual((await post(srv.url, '/v3/kv/lease/leases', {})).json.leases, leases.json.leases);
    assert.equal((await post(srv.url, '/v3/kv/lease/revoke', { ID: 4242 })).status, 200);
    assert.equal((await post(srv.url, '/v3/kv/range', { key: b64('leased') })).json.count, undefined);
    const again = await post(srv.url, '/v3/lease/revoke', { ID: 4242 });
    assert.equal(again.status, 404);
    assert.equal(again.json.message, 'etcdserver: requested lease not found');
  });

  it('cluster member list and maintenance status', async () => {
    const list = await post(srv.url, '/v3/cluster/member/list', {});
    assert.equal(list.status, 200);
    assert.equal(list.json.members.length, 1);
    assert.equal(list.json.members[0].ID, list.json.header.member_id);
    const st = await post(srv.url, '/v3/maintenance/status', {});
    assert.equal(st.json.leader, st.json.header.member_id);
    assert.equal(st.json.version, '3.4.0');
    assert.ok(Number(st.json.raftIndex) > 0);
  });

  it('watch streams newline-delimited {"result": ...}: created, then a put made afterwards', async () => {
    const lines = await stream(
      srv.url,
      '/v3/watch',
      JSON.stringify({ create_request: { key: b64('w/'), range_end: b64('w0'), prev_kv: true } }),
      (ls) => ls.some((l) => l.result.events),
      async () => {
        await post(srv.url, '/v3/kv/put', { key: b64('w/1'), value: b64('a') });
      },
    );
    assert.equal(lines[0].result.created, true);
    const ev = lines.find((l) => l.result.events).result.events[0];
    assert.equal(ev.type, undefined); // PUT is the enum's default: omitted, as etcd's gateway
    assert.equal(ev.kv.key, b64('w/1'));
    assert.equal(ev.kv.value, b64('a'));
  });

  it('auth/authenticate reaches the Auth service (auth disabled → FailedPrecondition → 412)', async () => {
    const r = await post(srv.url, '/v3/auth/authenticate', { name: 'root', password: 'x' });
    assert.ok([412, 501].includes(r.status), r.body);
    assert.equal(typeof r.json.message, 'string');
  });

  it('bad requests: invalid JSON, invalid base64, wrong types, oversize bodies → 400; unknown path 404; GET 405', async () => {
    const bad = await post(srv.url, '/v3/kv/range', '{bad');
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json, { error: "invalid character 'b' looking for beginning of object key string", message: "invalid character 'b' looking for beginning of object key string", code: 3 });
    const b64bad = await post(srv.url, '/v3/kv/range', { key: '!!!' });
    assert.equal(b64bad.status, 400);
    assert.match(b64bad.json.message, /illegal base64 data at input byte 0/);
    assert.equal((await post(srv.url, '/v3/kv/range', { key: 123 })).status, 400);
    assert.equal((await post(srv.url, '/v3/kv/range', [])).status, 400);
    const huge = await post(srv.url, '/v3/kv/put', { key: b64('big'), value: 'A'.repeat(5 * 1024 * 1024) });
    assert.equal(huge.status, 400);
    assert.equal(huge.json.message, 'etcdserver: request is too large');
    const tooLarge = await post(srv.url, '/v3/kv/put', { key: b64('big'), value: Buffer.alloc(1.6 * 1024 * 1024).toString('base64') });
    assert.equal(tooLarge.status, 400);
    assert.equal(tooLarge.json.message, 'etcdserver: request is too large');
    assert.equal((await post(srv.url, '/v3/kv/nosuch', {})).status, 404);
    assert.equal((await fetch(srv.url + '/v3/kv/range')).status, 405);
    // Still serving.
    assert.equal((await post(srv.url, '/v3/kv/range', { key: b64('t') })).status, 200);
  });
});

describe('JSON gateway answers have the shapes of etcd 3.4\'s', function () {
  this.timeout(60_000);
  let qkv: ServerProcess;
  let etcd: ChildProcess | undefined;
  let etcdUrl = '';

  before(async function () {
    if (!hasEtcd()) {
      this.skip();
    }
    const [client, peer] = [await freePort(), await freePort()];
    etcdUrl = `http://127.0.0.1:${client}`;
    etcd = spawn('etcd', ['--name', 'ref', '--data-dir', tempDir('etcd-ref-'), '--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl, '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`, '--initial-cluster', `ref=http://127.0.0.1:${peer}`], { stdio: 'ignore' });
    qkv = await startServer();
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(etcdUrl + '/health').then((r) => r.ok, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    if (etcd?.pid) etcd.kill('SIGKILL');
    if (qkv) await qkv.stop();
  });

  it('the same requests give the same JSON shapes and error bodies', async () => {
    const script: [string, unknown][] = [
      ['/v3/kv/put', { key: b64('s'), value: b64('1') }],
      ['/v3/kv/put', { key: b64('s'), value: b64('2'), prev_kv: true }],
      ['/v3/kv/range', { key: b64('s') }],
      ['/v3/kv/range', { key: b64('nothing') }],
      ['/v3/kv/txn', { compare: [{ key: b64('s'), result: 'EQUAL', target: 'VALUE', value: b64('2') }], success: [{ request_put: { key: b64('s'), value: b64('3') } }, { request_range: { key: b64('s') } }] }],
      ['/v3/kv/txn', { compare: [{ key: b64('s'), result: 'EQUAL', target: 'VALUE', value: b64('x') }], failure: [{ request_delete_range: { key: b64('none') } }] }],
      ['/v3/kv/deleterange', { key: b64('s'), prev_kv: true }],
      ['/v3/lease/grant', { TTL: 30, ID: 77 }],
      ['/v3/lease/timetolive', { ID: 77 }],
      ['/v3/lease/timetolive', { ID: 78 }],
      ['/v3/kv/put', { key: '' }],
      ['/v3/kv/range', '{bad'],
      ['/v3/kv/range', { key: b64('s'), revision: 100000 }],
      ['/v3/lease/revoke', { ID: 12345 }],
      ['/v3/auth/authenticate', { name: 'x', password: 'y' }],
    ];
    for (const [p, body] of script) {
      const [a, b] = [await post(etcdUrl, p, body), await post(qkv.url, p, body)];
      assert.equal(b.status, a.status, `${p} ${JSON.stringify(body)}: status`);
      assert.deepEqual(shape(b.json), shape(a.json), `${p} ${JSON.stringify(body)}: ${a.body} vs ${b.body}`);
      if (a.json?.code !== undefined) assert.equal(b.json.message, a.json.message, `${p}: error message`);
    }
  });

  it('watch and keepalive streams have the same framing', async () => {
    for (const url of [etcdUrl, qkv.url]) await post(url, '/v3/lease/grant', { TTL: 30, ID: 91 });
    const [ka, kb] = [await post(etcdUrl, '/v3/lease/keepalive', { ID: 91 }), await post(qkv.url, '/v3/lease/keepalive', { ID: 91 })];
    assert.deepEqual(shape(JSON.parse(kb.body)), shape(JSON.parse(ka.body)));
    const watch = (url: string) =>
      stream(url, '/v3/watch', JSON.stringify({ create_request: { key: b64('ws') } }), (ls) => ls.length >= 2, async () => {
        await post(url, '/v3/kv/put', { key: b64('ws'), value: b64('v') });
      });
    const [wa, wb] = [await watch(etcdUrl), await watch(qkv.url)];
    assert.deepEqual(shape(wb), shape(wa));
  });
});
