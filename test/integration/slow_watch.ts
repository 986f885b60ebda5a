// The slow-watcher experiment (etcd #16839), shared by scripts/slow-watchers.ts (1,000 watchers,
// 100k puts, against quorumkv and etcd) and test/integration/slow_watchers.test.ts (CI-sized):
//
//   1. a raw HTTP/2 client opens one Watch stream with N watchers and then never opens its flow-
//      control window (it reads the socket, so what holds the server's responses back is HTTP/2's
//      zero window, as with a client that stopped consuming);
//   2. P puts of V bytes go in from a grpc-js client while a normal watcher on another connection
//      times each of a series of puts from send to event (real-time delivery);
//   3. the member's VmRSS (and, where it has them, its watch buffer metrics) are sampled meanwhile;
//   4. optionally the history is compacted; then the slow client opens its window and reads, and
//      every watcher must have got every event of its keys in revision order, or a cancel with
//      compact_revision after a gap-free prefix of them.
import fs from 'node:fs';
import net from 'node:net';
import type protobuf from 'protobufjs';
import { CONVERSION, protoRoot } from '../../src/proto';
import { RawWatchStream, kvClient, unary, type RawWatchResponse } from '../compat/grpc_client';
import * as F from '../hostile/frames';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STREAM_ID = 1;
/** What the slow client credits when it starts reading, and per DATA frame after that. */
const READ_WINDOW_BYTES = 16 * 1024 * 1024;

export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** One Watch stream on a raw HTTP/2 connection whose window stays closed until resume(). */
export class ZeroWindowWatchStream {
  private readonly sock: net.Socket;
  private readonly WatchResponse: protobuf.Type;
  private pending: Buffer = Buffer.alloc(0);
  private reading = false;
  created = 0;
  /** DATA bytes received on the watch stream. */
  dataBytes = 0;
  /** Per watch id: the (key, mod revision) of each event received, in order. */
  readonly events = new Map<string, { key: string; rev: number }[]>();
  readonly compacted = new Map<string, number>();
  readonly otherCancels: string[] = [];
  ended: string | undefined;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.WatchResponse = protoRoot().lookupType('etcdserverpb.WatchResponse');
    F.readFrames(sock, (type, flags, stream, payload) => this.onFrame(type, flags, stream, payload));
    sock.on('close', () => (this.ended ??= 'connection closed'));
  }

  /** Opens the stream and creates one watcher per key (ids 0..n-1, assigned in order). */
  static async open(port: number, keys: { key: string; rangeEnd?: string }[]): Promise<ZeroWindowWatchStream> {
    const sock = await F.connectRaw(port, [F.settings([])]);
    const s = new ZeroWindowWatchStream(sock);
    const creates = keys.map((k) => createRequest(k.key, k.rangeEnd));
    sock.write(F.grpcHeaders(STREAM_ID, '/etcdserverpb.Watch/Watch'));
    // A few creates per DATA frame, within the server's default 16 KiB frame size.
    for (let i = 0; i < creates.length; i += 200) sock.write(F.grpcData(STREAM_ID, creates.slice(i, i + 200)));
    const deadline = Date.now() + 20_000;
    while (s.created < keys.length) {
      if (Date.now() > deadline || s.ended) throw new Error(`${s.created}/${keys.length} watchers created (${s.ended ?? 'timeout'})`);
      await sleep(10);
    }
    return s;
  }

  /** The client starts reading: opens its windows, and credits back every DATA frame from now on. */
  resume(): void {
    this.reading = true;
    this.sock.write(Buffer.concat([F.windowUpdate(0, READ_WINDOW_BYTES), F.windowUpdate(STREAM_ID, READ_WINDOW_BYTES)]));
  }

  close(): void {
    this.sock.destroy();
  }

  get totalEvents(): number {
    let n = 0;
    for (const e of this.events.values()) n += e.length;
    return n;
  }

  private onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    if (type === F.T.SETTINGS && (flags & 1) === 0) this.sock.write(F.frame(F.T.SETTINGS, 1, 0));
    else if (type === F.T.PING && (flags & 1) === 0) this.sock.write(F.frame(F.T.PING, 1, 0, payload));
    else if (type === F.T.GOAWAY) this.ended = `GOAWAY code ${payload.readUInt32BE(4)}`;
    else if (type === F.T.RST_STREAM && stream === STREAM_ID) this.ended = `RST_STREAM code ${payload.readUInt32BE(0)}`;
    else if (type === F.T.HEADERS && stream === STREAM_ID && flags & 1) this.ended = 'trailers (the call ended)';
    else if (type === F.T.DATA && stream === STREAM_ID) {
      this.dataBytes += payload.length;
      if (this.reading && payload.length > 0) this.sock.write(Buffer.concat([F.windowUpdate(0, payload.length), F.windowUpdate(STREAM_ID, payload.length)]));
      this.onData(payload);
    }
  }

  private onData(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      this.onMessage(buf.subarray(5, 5 + len));
      buf = buf.subarray(5 + len);
    }
    this.pending = Buffer.from(buf);
  }

  private onMessage(m: Buffer): void {
    const r = this.WatchResponse.toObject(this.WatchResponse.decode(m), CONVERSION) as RawWatchResponse;
    const id = String(r.watch_id);
    if (r.created) {
      this.created++;
      this.events.set(id, []);
    }
    if (r.events?.length) {
      const list = this.events.get(id) ?? [];
      for (const e of r.events) list.push({ key: e.kv.key.toString(), rev: Number(e.kv.mod_revision) });
      this.events.set(id, list);
    }
    if (r.canceled && !r.created) {
      if (Number(r.compact_revision) > 0) this.compacted.set(id, Number(r.compact_revision));
      else this.otherCancels.push(`${id}: ${r.cancel_reason}`);
    }
  }
}

/** WatchRequest{create_request: {key, range_end}}. */
function createRequest(key: string, rangeEnd?: string): Buffer {
  const k = Buffer.from(key);
  const parts = [Buffer.from([0x0a, k.length]), k];
  if (rangeEnd !== undefined) parts.push(Buffer.from([0x12, rangeEnd.length]), Buffer.from(rangeEnd));
  const inner = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([0x0a, inner.length]), inner]);
}

export interface SlowWatchOptions {
  endpoint: string; // host:port
  pid: number;
  /** Slow watchers; watcher i watches keyOf(i) (one key) or, with prefix, everything under "s/". */
  watchers: number;
  /** Slow streams the watchers are spread over (default 1), each on its own connection. */
  streams?: number;
  prefix: boolean;
  puts: number;
  valueBytes: number;
  /** Keys the puts cycle through ("s/<i mod keys>"). */
  keys: number;
  concurrency: number;
  compact: boolean;
  resumeTimeoutMs: number;
  /** Reads the member's /metrics (quorumkv only): the watch buffer gauge is sampled with RSS. */
  metricsUrl?: string;
  log?: (line: string) => void;
}

export interface SlowWatchResult {
  rssBeforeKb: number;
  rssMaxPutsKb: number;
  rssAfterPutsKb: number;
  rssMaxResumeKb: number;
  rssSamples: { tMs: number; kb: number; watchBufferedBytes?: number }[];
  putsSeconds: number;
  fastLatenciesMs: number[];
  /** The same puts, send → response (the commit latency within put→event). */
  fastCommitMs: number[];
  fastMissed: number;
  slowBytesBeforeResume: number;
  resumeSeconds: number;
  completeWatchers: number;
  compactedWatchers: number;
  /** Watchers whose events were not exactly their keys' revisions in order (must be 0). */
  wrong: string[];
  eventsDelivered: number;
  watchBufferedMaxBytes: number | undefined;
  /** quorumkv_grpc_server_buffered_response_bytes, sampled: every response the client port holds. */
  grpcBufferedMaxBytes: number | undefined;
  metrics: Record<string, number>;
}

async function metric(url: string | undefined, names: string[]): Promise<Record<string, number>> {
  if (!url) return {};
  const out: Record<string, number> = {};
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const n of names) {
      const m = new RegExp(`^${n} ([0-9.e+]+)$`, 'm').exec(text);
      if (m) out[n] = Number(m[1]);
    }
  } catch (err) {
    out.error = 1;
    console.error(`metrics: ${(err as Error).message}`);
  }
  return out;
}

const WATCH_METRICS = ['quorumkv_watch_buffered_bytes', 'quorumkv_watch_slow_watchers_total', 'quorumkv_watch_streams_over_bound_total', 'quorumkv_watch_compacted_watchers_total', 'quorumkv_grpc_server_buffered_response_bytes', 'quorumkv_grpc_server_calls_evicted_total'];

export async function runSlowWatch(o: SlowWatchOptions): Promise<SlowWatchResult> {
  const log = o.log ?? (() => undefined);
  const port = Number(o.endpoint.split(':')[1]);
  const keyOf = (i: number) => `s/${String(i).padStart(6, '0')}`;
  const kv = kvClient(o.endpoint);
  await unary(kv, 'Put', { key: Buffer.from('probe'), value: Buffer.from('v') });
  const rssBeforeKb = rssKb(o.pid);
  // Watcher i is on stream floor(i / perStream), with id i mod perStream there (ids from 0, in order).
  const nStreams = Math.max(1, o.streams ?? 1);
  const perStream = Math.ceil(o.watchers / nStreams);
  const slowStreams: ZeroWindowWatchStream[] = [];
  for (let s = 0; s * perStream < o.watchers; s++) {
    const n = Math.min(perStream, o.watchers - s * perStream);
    slowStreams.push(await ZeroWindowWatchStream.open(port, Array.from({ length: n }, (_, j) => (o.prefix ? { key: 's/', rangeEnd: 's0' } : { key: keyOf((s * perStream + j) % o.keys) }))));
  }
  if (o.watchers === 0) slowStreams.push(await ZeroWindowWatchStream.open(port, []));
  const streamOf = (i: number) => slowStreams[Math.floor(i / perStream)];
  const idOf = (i: number) => String(i % perStream);
  const slowEnded = () => slowStreams.find((x) => x.ended)?.ended;
  log(`${o.watchers} slow watchers created on ${slowStreams.length} streams; server VmRSS ${Math.round(rssBeforeKb / 1024)} MB before`);

  // The normal watcher, on its own connection.
  const fast = new RawWatchStream(o.endpoint);
  fast.keep = false;
  const fastLatenciesMs: number[] = [];
  const fastCommitMs: number[] = [];
  let fastCreated = false;
  fast.onResponse = (r) => {
    if (r.created) fastCreated = true;
    for (const e of r.events) fastLatenciesMs.push(Date.now() - Number(e.kv.value.toString()));
  };
  fast.create({ key: Buffer.from('fast') });
  for (let i = 0; !fastCreated; i++) {
    if (i > 1000) throw new Error('the fast watcher was not created');
    await sleep(5);
  }

  const samples: SlowWatchResult['rssSamples'] = [];
  const t0 = Date.now();
  let watchBufferedMaxBytes: number | undefined;
  let grpcBufferedMaxBytes: number | undefined;
  let phaseMax = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const kb = rssKb(o.pid);
      const m = await metric(o.metricsUrl, ['quorumkv_watch_buffered_bytes', 'quorumkv_grpc_server_buffered_response_bytes']);
      const wb = m.quorumkv_watch_buffered_bytes;
      if (wb !== undefined) watchBufferedMaxBytes = Math.max(watchBufferedMaxBytes ?? 0, wb);
      const gb = m.quorumkv_grpc_server_buffered_response_bytes;
      if (gb !== undefined) grpcBufferedMaxBytes = Math.max(grpcBufferedMaxBytes ?? 0, gb);
      samples.push({ tMs: Date.now() - t0, kb, watchBufferedBytes: wb });
      phaseMax = Math.max(phaseMax, kb);
      await sleep(200);
    }
  })();

  // Puts, and a timed put on the fast key every 50 ms meanwhile.
  const value = Buffer.alloc(o.valueBytes, 0x61);
  let next = 0;
  let putsDone = false;
  let fastSent = 0;
  const fastLoop = (async () => {
    while (!putsDone) {
      fastSent++;
      const sent = Date.now();
      await unary(kv, 'Put', { key: Buffer.from('fast'), value: Buffer.from(String(sent)) });
      fastCommitMs.push(Date.now() - sent);
      await sleep(50);
    }
  })();
  const tPuts = Date.now();
  // Each put is one revision: its response header says which. Sorted, they are the history under
  // "s/", i.e. what each slow watcher must get.
  const recorded: { key: string; rev: number }[] = [];
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (next < o.puts) {
        const i = next++;
        const key = keyOf(i % o.keys);
        const r = await unary<{ header: { revision: string } }>(kv, 'Put', { key: Buffer.from(key), value });
        recorded.push({ key, rev: Number(r.header.revision) });
        if (i % 10_000 === 9999) log(`${i + 1} puts, server VmRSS ${Math.round(rssKb(o.pid) / 1024)} MB`);
      }
    }),
  );
  const putsSeconds = (Date.now() - tPuts) / 1000;
  putsDone = true;
  await fastLoop;
  await sleep(300);
  const fastMissed = fastSent - fastLatenciesMs.length;
  const rssMaxPutsKb = phaseMax;
  const rssAfterPutsKb = rssKb(o.pid);
  const slowBytesBeforeResume = slowStreams.reduce((n, x) => n + x.dataBytes, 0);
  const metricsBefore = await metric(o.metricsUrl, WATCH_METRICS);
  log(`puts done in ${putsSeconds.toFixed(1)} s; server VmRSS ${Math.round(rssAfterPutsKb / 1024)} MB; the slow streams had received ${slowBytesBeforeResume} bytes`);

  recorded.sort((a, b) => a.rev - b.rev);
  const byKey = new Map<string, { key: string; rev: number }[]>();
  for (const e of recorded) {
    const l = byKey.get(e.key);
    if (l) l.push(e);
    else byKey.set(e.key, [e]);
  }
  const expectedOf = (i: number) => (o.prefix ? recorded : (byKey.get(keyOf(i % o.keys)) ?? []));
  if (o.compact) {
    const cur = Number((await unary<{ header: { revision: string } }>(kv, 'Range', { key: Buffer.from('probe') })).header.revision);
    await unary(kv, 'Compact', { revision: cur, physical: false });
    log(`compacted at ${cur}`);
  }

  phaseMax = 0;
  const tResume = Date.now();
  for (const x of slowStreams) x.resume();
  const answered = () => {
    let n = 0;
    for (let i = 0; i < o.watchers; i++) {
      const slow = streamOf(i);
      const id = idOf(i);
      if (slow.compacted.has(id) || (slow.events.get(id)?.length ?? 0) >= expectedOf(i).length) n++;
    }
    return n;
  };
  const deadline = Date.now() + o.resumeTimeoutMs;
  while (Date.now() < deadline && !slowEnded() && answered() < o.watchers) await sleep(50);
  const resumeSeconds = (Date.now() - tResume) / 1000;
  await sleep(300);
  sampling = false;
  await sampler;
  const rssMaxResumeKb = phaseMax;
  const metrics = { ...(await metric(o.metricsUrl, WATCH_METRICS)), ...Object.fromEntries(Object.entries(metricsBefore).map(([k, v]) => [`${k} (before resume)`, v])) };

  // Check every watcher: its events are exactly the revisions of its keys' puts, in order (or a
  // prefix of them followed by a cancel with compact_revision above the first one missing).
  const wrong: string[] = [];
  let complete = 0;
  for (let i = 0; i < o.watchers; i++) {
    const slow = streamOf(i);
    const id = idOf(i);
    const got = slow.events.get(id) ?? [];
    const expected = expectedOf(i);
    const c = slow.compacted.get(id);
    const n = got.length;
    let ok = n <= expected.length;
    for (let j = 0; ok && j < n; j++) ok = got[j].rev === expected[j].rev && got[j].key === expected[j].key;
    if (!ok) wrong.push(`watcher ${i}: events are not the history's (got ${n}, first difference near ${got.findIndex((g, j) => g.rev !== expected[j]?.rev)})`);
    else if (c !== undefined) {
      if (n < expected.length && expected[n].rev >= c) wrong.push(`watcher ${i}: cancelled at compaction ${c} though revision ${expected[n].rev} was still there`);
    } else if (n === expected.length) complete++;
    else wrong.push(`watcher ${i}: ${n} of ${expected.length} events and no cancel`);
  }
  for (const slow of slowStreams) {
    if (slow.otherCancels.length > 0) wrong.push(`cancels without compact_revision: ${slow.otherCancels.slice(0, 3).join('; ')}`);
    if (slow.ended) wrong.push(`a slow stream ended: ${slow.ended}`);
    slow.close();
  }
  fast.closeClient();
  kv.close();
  return {
    rssBeforeKb,
    rssMaxPutsKb,
    rssAfterPutsKb,
    rssMaxResumeKb,
    rssSamples: samples,
    putsSeconds,
    fastLatenciesMs,
    fastCommitMs,
    fastMissed,
    slowBytesBeforeResume,
    resumeSeconds,
    completeWatchers: complete,
    compactedWatchers: slowStreams.reduce((n, x) => n + x.compacted.size, 0),
    wrong,
    eventsDelivered: slowStreams.reduce((n, x) => n + x.totalEvents, 0),
    watchBufferedMaxBytes,
    grpcBufferedMaxBytes,
    metrics,
  };
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
