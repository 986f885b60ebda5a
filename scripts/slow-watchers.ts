// Slow watchers cannot exhaust memory (etcd #16839; docs/operations.md "Beyond etcd"): one Watch
// stream with 1,000 watchers whose raw HTTP/2 client never opens its flow-control window while
// 100k puts of 1 KiB go in; prints the member's VmRSS over time, the put→event latency of a normal
// watcher on another connection, and what the slow stream gets once it reads (every event in
// order, or a cancel with compact_revision). The experiment is test/integration/slow_watch.ts.
//
//   npx tsc -p . && node dist/scripts/slow-watchers.js [--watchers=1000] [--puts=100000]
//       [--streams=1] [--value-bytes=1024] [--keys=1000] [--concurrency=256] [--prefix] [--compact] [--etcd]
//       [--endpoint=host:port --pid=N] [-- member flags...]
//
// --streams spreads the watchers over that many slow streams, each on its own connection (the
// member-wide bound's case). Watcher i watches key s/<i mod keys> (--prefix: every watcher watches all of s/, so each put
// is an event for each of them). --compact compacts at the last revision before the slow client
// reads. --etcd runs the same against etcd 3.4 ($ETCD_BIN or /usr/bin/etcd) instead. --endpoint
// (with --pid for VmRSS) measures an already running server instead of starting one (e.g. an
// older build). Every process started is killed (its process group) at the end, on failure too.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, killGroup, startServer, spawnMember } from '../test/integration/harness';
import { percentile, runSlowWatch, type SlowWatchOptions, type SlowWatchResult } from '../test/integration/slow_watch';

const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';

function arg(name: string): string | undefined {
  const p = process.argv.find((a) => a.startsWith(`--${name}=`));
  return p?.slice(name.length + 3);
}
const flag = (name: string) => process.argv.includes(`--${name}`);

function report(name: string, r: SlowWatchResult, o: Omit<SlowWatchOptions, 'endpoint' | 'pid'>): void {
  const mb = (kb: number) => `${Math.round(kb / 1024)} MB`;
  console.log(`\n== ${name}: ${o.watchers} watchers on ${o.streams ?? 1} stream(s)${o.prefix ? ' on one prefix' : ` on ${o.keys} keys`}, ${o.puts} puts of ${o.valueBytes} B${o.compact ? ', compacted before reading' : ''}`);
  console.log(`VmRSS: before ${mb(r.rssBeforeKb)}, max during puts ${mb(r.rssMaxPutsKb)}, after puts ${mb(r.rssAfterPutsKb)}, max while the slow stream read ${mb(r.rssMaxResumeKb)}`);
  const step = Math.max(1, Math.floor(r.rssSamples.length / 12));
  console.log(
    'VmRSS over time (s: MB' + (r.watchBufferedMaxBytes !== undefined ? ' / watch buffered KiB' : '') + '): ' +
      r.rssSamples
        .filter((_, i) => i % step === 0)
        .map((x) => `${(x.tMs / 1000).toFixed(1)}: ${Math.round(x.kb / 1024)}${x.watchBufferedBytes !== undefined ? ` / ${Math.round(x.watchBufferedBytes / 1024)}` : ''}`)
        .join(', '),
  );
  console.log(`puts: ${r.putsSeconds.toFixed(1)} s (${Math.round(o.puts / r.putsSeconds)}/s)`);
  const l = r.fastLatenciesMs;
  const c = r.fastCommitMs;
  console.log(`normal watcher, put→event: ${l.length} events, p50 ${percentile(l, 50)} ms, p99 ${percentile(l, 99)} ms, max ${Math.max(...l)} ms; missed ${r.fastMissed} (the same puts, put→response: p50 ${percentile(c, 50)} ms, p99 ${percentile(c, 99)} ms)`);
  console.log(`slow streams: ${r.slowBytesBeforeResume} bytes received before they read; then ${r.eventsDelivered} events in ${r.resumeSeconds.toFixed(1)} s; ${r.completeWatchers} watchers got every event in order, ${r.compactedWatchers} got compact_revision`);
  console.log(r.wrong.length === 0 ? 'every watcher: every event in order, or the compaction answer after a gap-free prefix' : `WRONG (${r.wrong.length}): ${r.wrong.slice(0, 5).join(' | ')}`);
  if (r.watchBufferedMaxBytes !== undefined) console.log(`quorumkv_watch_buffered_bytes max sampled: ${Math.round(r.watchBufferedMaxBytes / 1024)} KiB`);
  for (const [k, v] of Object.entries(r.metrics)) console.log(`  ${k} ${v}`);
}

async function startEtcd(): Promise<{ endpoint: string; pid: number; stop: () => void }> {
  const port = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  const url = `http://127.0.0.1:${port}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slow-watchers-etcd-'));
  const { proc } = await spawnMember(ETCD_BIN, [`--data-dir=${dir}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`, `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=default=${peer}`], 'etcd');

  return {
    endpoint: `127.0.0.1:${port}`,
    pid: proc.pid!,
    stop: () => {
      killGroup(proc);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  const o: Omit<SlowWatchOptions, 'endpoint' | 'pid'> = {
    watchers: Number(arg('watchers') ?? 1000),
    streams: Number(arg('streams') ?? 1),
    puts: Number(arg('puts') ?? 100_000),
    valueBytes: Number(arg('value-bytes') ?? 1024),
    keys: Number(arg('keys') ?? 1000),
    prefix: flag('prefix'),
    compact: flag('compact'),
    concurrency: Number(arg('concurrency') ?? 256),
    resumeTimeoutMs: 120_000,
    log: (line) => console.log(`  ${line}`),
  };
  const dash = process.argv.indexOf('--');
  const memberFlags = dash < 0 ? [] : process.argv.slice(dash + 1);
  if (flag('etcd')) {
    if (!fs.existsSync(ETCD_BIN)) console.log(`no ${ETCD_BIN}: etcd left out`);
    else {
      const e = await startEtcd();
      try {
        report('etcd 3.4', await runSlowWatch({ ...o, endpoint: e.endpoint, pid: e.pid }), o);
      } finally {
        e.stop();
      }
    }
    return;
  }
  const endpoint = arg('endpoint');
  if (endpoint) {
    report(endpoint, await runSlowWatch({ ...o, endpoint, pid: Number(arg('pid')), metricsUrl: `http://${endpoint}` }), o);
    return;
  }
  const srv = await startServer({ args: memberFlags });
  try {
    report(`quorumkv${memberFlags.length ? ` ${memberFlags.join(' ')}` : ''}`, await runSlowWatch({ ...o, endpoint: srv.endpoint, pid: srv.proc.pid!, metricsUrl: srv.url }), o);
  } finally {
    await srv.stop();
    fs.rmSync(srv.dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
