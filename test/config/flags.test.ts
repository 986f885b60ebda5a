import assert from 'node:assert/strict';
import { ConfigError, parseServerFlags } from '../../src/config/flags';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

describe('server flags (etcd names, zod-validated)', () => {
  it('--initial-election-tick-advance: on by default as etcd, =false turns it off, bare turns it on', () => {
    assert.equal(parseServerFlags([], {}).initialElectionTickAdvance, true);
    assert.equal(parseServerFlags(['--initial-election-tick-advance=false'], {}).initialElectionTickAdvance, false);
    assert.equal(parseServerFlags(['--initial-election-tick-advance'], { ETCD_INITIAL_ELECTION_TICK_ADVANCE: 'false' }).initialElectionTickAdvance, true);
    assert.equal(parseServerFlags([], { ETCD_INITIAL_ELECTION_TICK_ADVANCE: 'false' }).initialElectionTickAdvance, false);
    assert.throws(() => parseServerFlags(['--initial-election-tick-advance=maybe'], {}), ConfigError);
  });

  it('defaults: single node on 127.0.0.1:2379, data dir <name>.etcd', () => {
    const c = parseServerFlags([], {});
    assert.deepEqual(c.listenClientUrls, ['http://127.0.0.1:2379']);
    assert.equal(c.name, 'default');
    assert.equal(c.dataDir, 'default.etcd');
    assert.equal(c.maxRequestBytes, 1.5 * 1024 * 1024);
    assert.equal(c.maxTxnOps, 128);
    assert.equal(c.logLevel, 'info');
    assert.deepEqual(c.advertiseClientUrls, c.listenClientUrls);
    assert.equal(c.autoCompaction, undefined, 'no automatic compaction unless asked, as etcd');
  });

  it('--grpc-keepalive-interval / -timeout: etcd\'s defaults (2h, 20s), durations, 0s turns the PING off', () => {
    const d = parseServerFlags([], {});
    assert.equal(d.grpcKeepaliveIntervalMs, 2 * 3600_000);
    assert.equal(d.grpcKeepaliveTimeoutMs, 20_000);
    const c = parseServerFlags(['--grpc-keepalive-interval=30s', '--grpc-keepalive-timeout=5s'], {});
    assert.equal(c.grpcKeepaliveIntervalMs, 30_000);
    assert.equal(c.grpcKeepaliveTimeoutMs, 5000);
    assert.equal(parseServerFlags(['--grpc-keepalive-interval=0s'], {}).grpcKeepaliveIntervalMs, 0);
    assert.throws(() => parseServerFlags(['--grpc-keepalive-timeout=0s'], {}), ConfigError);
    assert.throws(() => parseServerFlags(['--grpc-keepalive-interval=often'], {}), ConfigError);
  });

  it('--max-concurrent-streams: 1000 by default (etcd: 2^32-1), any value up to 2^32-1 (ETCD_MAX_CONCURRENT_STREAMS too)', () => {
    assert.equal(parseServerFlags([], {}).maxConcurrentStreams, 1000);
    assert.equal(parseServerFlags(['--max-concurrent-streams=4294967295'], {}).maxConcurrentStreams, 4294967295);
    assert.equal(parseServerFlags([], { ETCD_MAX_CONCURRENT_STREAMS: '250' }).maxConcurrentStreams, 250);
    assert.throws(() => parseServerFlags(['--max-concurrent-streams=0'], {}), ConfigError);
    assert.throws(() => parseServerFlags(['--max-concurrent-streams=4294967296'], {}), ConfigError);
  });

  it('--max-watch-stream-buffer-bytes / --max-watch-buffer-bytes: 1 MiB and 32 MiB by default, 16 KiB..1 MiB per stream, total 0 (off) or >= per stream', () => {
    const d = parseServerFlags([], {});
    assert.equal(d.watchStreamBufferBytesMax, 1024 * 1024);
    assert.equal(d.watchBufferBytesMax, 32 * 1024 * 1024);
    const c = parseServerFlags(['--max-watch-stream-buffer-bytes=65536', '--max-watch-buffer-bytes=1048576'], {});
    assert.equal(c.watchStreamBufferBytesMax, 65536);
    assert.equal(c.watchBufferBytesMax, 1048576);
    assert.equal(parseServerFlags(['--max-watch-buffer-bytes=0'], {}).watchBufferBytesMax, Infinity);
    assert.equal(parseServerFlags([], { ETCD_MAX_WATCH_BUFFER_BYTES: '4194304' }).watchBufferBytesMax, 4194304);
    assert.throws(() => parseServerFlags(['--max-watch-stream-buffer-bytes=1000'], {}), /at least 16384/);
    assert.throws(() => parseServerFlags(['--max-watch-stream-buffer-bytes=2097152'], {}), ConfigError);
    assert.throws(() => parseServerFlags(['--max-watch-buffer-bytes=-1'], {}), ConfigError);
    assert.throws(() => parseServerFlags(['--max-watch-buffer-bytes=65536'], {}), /at least --max-watch-stream-buffer-bytes/);
  });

  it('--max-range-answer-bytes: 256 MiB by default, a positive byte count, from ETCD_MAX_RANGE_ANSWER_BYTES too', () => {
    assert.equal(parseServerFlags([], {}).rangeAnswerBytesMax, 256 * 1024 * 1024);
    assert.equal(parseServerFlags(['--max-range-answer-bytes=1048576'], {}).rangeAnswerBytesMax, 1048576);
    assert.equal(parseServerFlags([], { ETCD_MAX_RANGE_ANSWER_BYTES: '4194304' }).rangeAnswerBytesMax, 4194304);
    assert.throws(() => parseServerFlags(['--max-range-answer-bytes=0'], {}), ConfigError);
    assert.throws(() => parseServerFlags(['--max-range-answer-bytes=-1'], {}), ConfigError);
  });

  it('--auto-compaction-retention: hours or a duration in periodic mode, revisions in revision mode', () => {
    assert.deepEqual(parseServerFlags(['--auto-compaction-retention=1'], {}).autoCompaction, { mode: 'periodic', retention: 3_600_000 });
    assert.deepEqual(parseServerFlags(['--auto-compaction-retention', '30m'], {}).autoCompaction, { mode: 'periodic', retention: 1_800_000 });
    assert.deepEqual(parseServerFlags(['--auto-compaction-mode=revision', '--auto-compaction-retention=1000'], {}).autoCompaction, { mode: 'revision', retention: 1000 });
    assert.equal(parseServerFlags(['--auto-compaction-mode=revision', '--auto-compaction-retention=0'], {}).autoCompaction, undefined);
    assert.deepEqual(parseServerFlags([], { ETCD_AUTO_COMPACTION_RETENTION: '2h' }).autoCompaction, { mode: 'periodic', retention: 7_200_000 });
  });

  it('accepts --flag=value, --flag value and -flag forms, and ETCD_* environment variables', () => {
    const c = parseServerFlags(['--name', 'n1', '-max-request-bytes=1000', '--listen-client-urls=http://127.0.0.1:1,http://127.0.0.2:2'], {
      ETCD_LOG_LEVEL: 'debug',
      ETCD_NAME: 'ignored-because-flag-wins',
    });
    assert.equal(c.name, 'n1');
    assert.equal(c.dataDir, 'n1.etcd');
    assert.equal(c.maxRequestBytes, 1000);
    assert.equal(c.logLevel, 'debug');
    assert.deepEqual(c.listenClientUrls, ['http://127.0.0.1:1', 'http://127.0.0.2:2']);
  });

  const bad: [string[], RegExp][] = [
    [['--no-such-flag=1'], /unknown flag --no-such-flag/],
    [['--max-request-bytes=abc'], /invalid --max-request-bytes="abc": expected a positive integer/],
    [['--max-request-bytes=0'], /invalid --max-request-bytes/],
    [['--listen-client-urls=localhost'], /invalid --listen-client-urls="localhost": expected URLs/],
    [['--log-level=loud'], /invalid --log-level="loud"/],
    [['--name'], /flag --name needs a value/],
    [['stray'], /unexpected argument "stray"/],
    [['--auto-compaction-mode=daily'], /invalid --auto-compaction-mode="daily"/],
    [['--auto-compaction-retention=ten'], /invalid --auto-compaction-retention="ten": expected hours/],
    [['--auto-compaction-mode=revision', '--auto-compaction-retention=1h'], /invalid --auto-compaction-retention="1h": expected a number of revisions/],
  ];
  for (const [argv, msg] of bad) {
    it(`rejects ${argv.join(' ')} with one clear line`, () => {
      assert.throws(() => parseServerFlags(argv, {}), (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, msg);
        assert.ok(!err.message.includes('\n'), 'one line');
        return true;
      });
    });
  }
});

describe('cluster flags and --config-file', () => {

  it('--initial-cluster names every member; this member must be in it', () => {
    const c = parseServerFlags(['--name=n2', '--initial-advertise-peer-urls=http://127.0.0.1:2382', '--initial-cluster=n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2382,n3=http://127.0.0.1:2384', '--initial-cluster-state=new'], {});
    assert.deepEqual([...c.initialCluster.keys()], ['n1', 'n2', 'n3']);
    assert.deepEqual(c.initialCluster.get('n2'), ['http://127.0.0.1:2382']);
    assert.equal(c.initialClusterState, 'new');
    assert.throws(() => parseServerFlags(['--name=n9', '--initial-cluster=n1=http://127.0.0.1:2380'], {}), /has no member named "n9"/);
    assert.throws(() => parseServerFlags(['--initial-cluster=n1'], {}), /expected name=url pairs/);
    assert.throws(() => parseServerFlags(['--initial-cluster-state=old'], {}), /invalid --initial-cluster-state/);
  });

  it('election timeout must be at least 5 heartbeats, as etcd requires', () => {
    assert.throws(() => parseServerFlags(['--heartbeat-interval=100', '--election-timeout=400'], {}), /at least 5 times --heartbeat-interval/);
  });

  it('reads a YAML config file with etcd flag names; other flags are then ignored, as etcd', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-cfg-'));
    const file = path.join(dir, 'n1.yaml');
    fs.writeFileSync(file, 'name: n1\ndata-dir: /var/lib/n1\nlisten-client-urls: http://127.0.0.1:12379\nsnapshot-count: 5000\n');
    const c = parseServerFlags([`--config-file=${file}`, '--name=ignored'], { ETCD_NAME: 'ignored' });
    assert.equal(c.name, 'n1');
    assert.equal(c.dataDir, '/var/lib/n1');
    assert.equal(c.snapshotCount, 5000);
    fs.writeFileSync(file, 'name: n1\nsnapshot-count: lots\n');
    assert.throws(() => parseServerFlags([`--config-file=${file}`], {}), /invalid --snapshot-count="lots"/);
    fs.writeFileSync(file, 'name: n1\nbogus: 1\n');
    assert.throws(() => parseServerFlags([`--config-file=${file}`], {}), /unknown key "bogus"/);
    fs.writeFileSync(file, 'name: [unterminated\n');
    assert.throws(() => parseServerFlags([`--config-file=${file}`], {}), /not valid YAML/);
    assert.throws(() => parseServerFlags([`--config-file=${dir}/missing.yaml`], {}), /cannot read --config-file/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
