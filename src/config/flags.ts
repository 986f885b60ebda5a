// Server configuration from command-line flags, using etcd's flag names so that a script that
// starts etcd starts quorumkv by changing only the binary. Every value is validated by a zod
// schema; a bad flag produces one line naming it (ConfigError) and the CLI exits non-zero.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
// zod's v3 API (the package's permanent `zod/v3` entry): its v4 entries, `zod/v4/core` included,
// load all ~80 locale modules at import, ~95 ms of CPU of every start (docs/performance.md).
import { z } from 'zod/v3';
import { lazyModule } from '../util/lazy_module';
import { parseGoDuration } from '../util/duration';
import { loadTls, type TlsFiles } from '../tls';

/** Default --hot-value-bytes: the most recently written 8 MiB of values stay in memory. */
export const HOT_VALUE_BYTES_DEFAULT = 8 * 1024 * 1024;

/** etcd's default quota: 2 GiB (8 GiB is the suggested maximum). */
export const QUOTA_BACKEND_BYTES_DEFAULT = 2 * 1024 * 1024 * 1024;
/** etcd's --experimental-watch-progress-notify-interval default: 10 minutes. */
export const WATCH_PROGRESS_NOTIFY_INTERVAL_MS_DEFAULT = 10 * 60 * 1000;
/** etcd's --experimental-lease-checkpoint-interval default: 5 minutes. */
export const LEASE_CHECKPOINT_INTERVAL_MS_DEFAULT = 5 * 60 * 1000;
/** --max-concurrent-streams: streams per client connection. etcd's default is 2^32-1 (none);
 *  quorumkv's hand-written HTTP/2 server enforces one, above Go's http2 server's 250 so that a
 *  client pipelining many unary calls on one connection is not throttled (docs/operations.md). */
export const MAX_CONCURRENT_STREAMS_DEFAULT = 1000;
/** --max-tls-handshakes (quorumkv's own; etcd has no such bound): TLS handshakes one https://
 *  client listener keeps in progress at once (src/grpcserver/listener.ts). */
export const MAX_TLS_HANDSHAKES_DEFAULT = 1024;
/** --max-watch-stream-buffer-bytes: response bytes one watch stream may hold for a client that
 *  does not read before its watchers catch up from history instead (etcd #16839). The client
 *  port's send buffer per stream (1 MiB) is also the flag's ceiling: above it the transport's own
 *  back-pressure already does the same. */
export const WATCH_STREAM_BUFFER_BYTES_MAX_DEFAULT = 1024 * 1024;
export const WATCH_STREAM_BUFFER_BYTES_MAX_MIN = 16 * 1024;
/** --max-watch-buffer-bytes: the same for all watch streams of the member together (0: no
 *  member-wide watch bound). Below the client port's member-wide response budget (64 MiB), so
 *  that watch streams go to catch-up long before the budget would end calls. */
export const WATCH_BUFFER_BYTES_MAX_DEFAULT = 32 * 1024 * 1024;
/** --max-range-answer-bytes: memory all large range answers (Range, read-only Txn) being read and
 *  sent may hold together; past it they wait, then are refused (src/api/range_budget.ts). A
 *  streamed answer holds about 1.3 MiB whatever its size: this is ~200 of them. */
export const RANGE_ANSWER_BYTES_MAX_DEFAULT = 256 * 1024 * 1024;
const HOUR_MS = 3_600_000;

/** etcd's --auth-token-ttl default (seconds of a simple token's life without use). */
export const AUTH_TOKEN_TTL_S_DEFAULT = 300;
/** etcd's JWT ttl default: 5 minutes. */
const JWT_TTL_MS_DEFAULT = 5 * 60 * 1000;
/** The signing methods etcd 3.4 accepts for JWT tokens. */
const JWT_SIGN_METHODS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const;

/** --auth-token: etcd's "simple", or "jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>[,ttl=<duration>]". */
export type AuthTokenConfig =
  | { kind: 'simple' }
  | { kind: 'jwt'; signMethod: (typeof JWT_SIGN_METHODS)[number]; publicKey: KeyObject; privateKey: KeyObject | undefined; ttlMs: number };

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type CompactionMode = 'periodic' | 'revision';

/** --auto-compaction-mode and --auto-compaction-retention, as read (server/compactor.ts acts). */
export interface CompactionPolicy {
  mode: CompactionMode;
  /** periodic: milliseconds of history to keep; revision: revisions to keep. 0 = off. */
  retention: number;
}

/** etcd's reading of --auto-compaction-retention for a mode: in periodic mode a bare integer is
 *  hours, anything else a Go duration; in revision mode an integer number of revisions. Returns
 *  the retention, or why it is not one. */
export function parseRetention(mode: CompactionMode, raw: string): number | string {
  const s = raw.trim();
  if (mode === 'revision') {
    if (!/^[0-9]+$/.test(s)) return 'expected a number of revisions (an integer >= 0) in revision mode';
    const n = Number(s);
    return Number.isSafeInteger(n) ? n : 'too large';
  }
  if (/^[0-9]+$/.test(s)) {
    const hours = Number(s);
    return Number.isSafeInteger(hours * HOUR_MS) ? hours * HOUR_MS : 'too large';
  }
  const ms = parseGoDuration(s);
  if (ms === undefined) return 'expected hours (an integer) or a duration such as 30m, 1h30m, 90s';
  return ms;
}

const urlList = z
  .string()
  .transform((s) => s.split(',').map((u) => u.trim()).filter((u) => u.length > 0))
  .pipe(
    z
      .array(
        z.string().refine((u) => {
          try {
            const p = new URL(u);
            return (p.protocol === 'http:' || p.protocol === 'https:') && p.port !== '' && p.hostname !== '';
          } catch {
            return false;
          }
        }, 'expected URLs like http://127.0.0.1:2379 (scheme, host and port)'),
      )
      .min(1, 'expected at least one URL'),
  );

const positiveInt = (max: number) =>
  z
    .string()
    .regex(/^[0-9]+$/, 'expected a positive integer')
    .transform((s) => Number(s))
    .pipe(z.number().int().min(1).max(max));

/** etcd's --quota-backend-bytes: 0 = the default (2 GiB), negative = no quota, as etcd. */
const quotaBytes = z
  .string()
  .regex(/^-?[0-9]+$/, 'expected an integer number of bytes (0 = default 2 GiB, negative = no quota)')
  .transform((s) => Number(s))
  .pipe(z.number().int().refine(Number.isSafeInteger, 'too large'));

/** --hot-value-bytes: bytes of values kept in memory; -1 = every value (no spill file). */
const hotValueBytes = z
  .string()
  .regex(/^(-1|[0-9]+)$/, 'expected a number of bytes >= 0, or -1 to keep every value in memory')
  .transform((s) => Number(s))
  .pipe(z.number().int().refine(Number.isSafeInteger, 'too large'));

/** A positive Go duration ("500ms", "10s", "5m"), in milliseconds. */
const positiveDuration = z
  .string()
  .trim()
  .transform((s, ctx) => {
    const ms = parseGoDuration(s);
    if (ms === undefined || !(ms > 0)) {
      ctx.addIssue({ code: 'custom', message: ms === undefined ? 'expected a duration like 500ms, 10s or 10m' : 'must be positive' });
      return z.NEVER;
    }
    return ms;
  });

const bool = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(z.enum(['true', 'false', '1', '0']))
  .transform((s) => s === 'true' || s === '1');

const readableFile = z
  .string()
  .min(1, 'must not be empty')
  .superRefine((file, ctx) => {
    try {
      if (!fs.statSync(file).isFile()) ctx.addIssue({ code: 'custom', message: 'not a regular file' });
      else fs.accessSync(file, fs.constants.R_OK);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})` });
    }
  });

const authToken = z.string().transform((s, ctx): AuthTokenConfig => {
  const fail = (message: string) => {
    ctx.addIssue({ code: 'custom', message });
    return z.NEVER;
  };
  const [kind, ...opts] = s.split(',');
  if (kind === 'simple' && opts.length === 0) return { kind: 'simple' };
  if (kind !== 'jwt') return fail('expected "simple" or "jwt,pub-key=<file>,priv-key=<file>,sign-method=<method>[,ttl=<duration>]"');
  const o = new Map<string, string>();
  for (const kv of opts) {
    const i = kv.indexOf('=');
    const [k, v] = i < 0 ? [kv, ''] : [kv.slice(0, i), kv.slice(i + 1)];
    if (!['pub-key', 'priv-key', 'sign-method', 'ttl'].includes(k)) return fail(`unknown jwt option "${k}"`);
    o.set(k, v);
  }
  const method = o.get('sign-method');
  const signMethod = JWT_SIGN_METHODS.find((m) => m === method);
  if (!signMethod) return fail(`jwt sign-method must be one of ${JWT_SIGN_METHODS.join(', ')}`);
  const pub = o.get('pub-key');
  if (!pub) return fail('jwt needs pub-key=<PEM file>');
  let ttlMs = JWT_TTL_MS_DEFAULT;
  if (o.has('ttl')) {
    const t = parseGoDuration(o.get('ttl')!);
    if (t === undefined || !(t >= 1000)) return fail('jwt ttl must be a duration of at least 1s, like 5m');
    ttlMs = t;
  }
  const family = signMethod.startsWith('ES') ? 'ec' : 'rsa';
  const load = (file: string, priv: boolean): KeyObject | string => {
    let pem: Buffer;
    try {
      pem = fs.readFileSync(file);
    } catch (err) {
      return `cannot read ${file}: ${(err as Error).message}`;
    }
    try {
      const key = priv ? createPrivateKey(pem) : createPublicKey(pem);
      const type = key.asymmetricKeyType === 'rsa-pss' ? 'rsa' : key.asymmetricKeyType;
      return type === family ? key : `${file} holds a ${key.asymmetricKeyType} key; sign-method ${signMethod} needs ${family}`;
    } catch (err) {
      return `${file} is not a PEM ${priv ? 'private' : 'public'} key: ${(err as Error).message}`;
    }
  };
  const publicKey = load(pub, false);
  if (typeof publicKey === 'string') return fail(publicKey);
  const privFile = o.get('priv-key');
  const privateKey = privFile ? load(privFile, true) : undefined;
  if (typeof privateKey === 'string') return fail(privateKey);
  return { kind: 'jwt', signMethod, publicKey, privateKey, ttlMs };
});

/** A duration that may be 0 (off). */
const durationOrOff = z
  .string()
  .trim()
  .transform((s, ctx) => {
    const ms = parseGoDuration(s);
    if (ms === undefined || ms < 0) {
      ctx.addIssue({ code: 'custom', message: 'expected a duration like 0s (off), 30s or 5m' });
      return z.NEVER;
    }
    return ms;
  });

/** Every flag the server accepts, with its schema and default (as a flag string). */
const flagSchemas = {
  name: z.string().min(1, 'must not be empty').regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-" only'),
  'data-dir': z.string().min(1, 'must not be empty'),
  'listen-client-urls': urlList,
  'advertise-client-urls': urlList,
  'listen-peer-urls': urlList,
  'initial-advertise-peer-urls': urlList,
  'initial-cluster-token': z.string().min(1, 'must not be empty'),
  'max-request-bytes': positiveInt(64 * 1024 * 1024),
  'max-txn-ops': positiveInt(1_000_000),
  'auth-token': authToken,
  'auth-token-ttl': positiveInt(1_000_000_000),
  /** etcd's bcrypt bounds (golang.org/x/crypto/bcrypt MinCost 4, MaxCost 31). */
  'bcrypt-cost': positiveInt(31).pipe(z.number().min(4, 'bcrypt cost must be at least 4')),
  'max-concurrent-streams': positiveInt(2 ** 32 - 1),
  // etcd's server keepalive: PING a connection silent this long (0s: never); close it if the
  // client then stays silent for the timeout (a client gone without closing its TCP connection).
  'grpc-keepalive-interval': durationOrOff,
  'grpc-keepalive-timeout': positiveDuration,
  // quorumkv's own: the https:// client port's handshakes in progress and their time limit.
  'max-tls-handshakes': positiveInt(1_000_000),
  'tls-handshake-timeout': positiveDuration,
  'max-watch-stream-buffer-bytes': positiveInt(WATCH_STREAM_BUFFER_BYTES_MAX_DEFAULT).pipe(
    z.number().min(WATCH_STREAM_BUFFER_BYTES_MAX_MIN, `must be at least ${WATCH_STREAM_BUFFER_BYTES_MAX_MIN} (a few responses)`),
  ),
  'max-range-answer-bytes': positiveInt(2 ** 40),
  'max-watch-buffer-bytes': z
    .string()
    .regex(/^[0-9]+$/, 'expected a number of bytes >= 0 (0: no member-wide bound)')
    .transform((s) => Number(s))
    .pipe(z.number().int().max(2 ** 40, 'too large')),
  'log-level': z.enum(['debug', 'info', 'warn', 'error']),
  'initial-cluster': z.string().min(1, 'must not be empty'),
  'initial-cluster-state': z.enum(['new', 'existing']),
  'heartbeat-interval': positiveInt(60_000),
  'election-timeout': positiveInt(600_000),
  'snapshot-count': positiveInt(1_000_000_000),
  'quota-backend-bytes': quotaBytes,
  'hot-value-bytes': hotValueBytes,
  'auto-compaction-mode': z.enum(['periodic', 'revision']),
  // Read with the mode (parseRetention); here only its shape.
  'auto-compaction-retention': z.string().trim().min(1, 'must not be empty'),
  'experimental-watch-progress-notify-interval': positiveDuration,
  'experimental-lease-checkpoint-interval': positiveDuration,
  'experimental-corrupt-check-time': durationOrOff,
  // TLS (docs/security.md "TLS"): the files must exist and be readable when the flag is parsed.
  'cert-file': readableFile,
  'key-file': readableFile,
  'trusted-ca-file': readableFile,
  'client-cert-auth': bool,
  'auto-promote-learners': bool,
  'initial-election-tick-advance': bool,
  'peer-cert-file': readableFile,
  'peer-key-file': readableFile,
  'peer-trusted-ca-file': readableFile,
  'peer-client-cert-auth': bool,
} as const;

/** Flags that may be given bare (`--client-cert-auth` = true), as Go's boolean flags. */
const BOOLEAN_FLAGS: ReadonlySet<string> = new Set(['client-cert-auth', 'peer-client-cert-auth', 'auto-promote-learners', 'initial-election-tick-advance']);

type FlagName = keyof typeof flagSchemas;

const defaults: Record<FlagName, string | undefined> = {
  name: 'default',
  'data-dir': undefined, // "<name>.etcd", as etcd
  'listen-client-urls': 'http://127.0.0.1:2379',
  'advertise-client-urls': undefined, // the listen URLs
  'listen-peer-urls': 'http://127.0.0.1:2380',
  'initial-advertise-peer-urls': undefined, // the listen peer URLs
  'initial-cluster-token': 'etcd-cluster',
  'max-request-bytes': String(1.5 * 1024 * 1024),
  'max-txn-ops': '128',
  'bcrypt-cost': '10',
  'auth-token': 'simple',
  'auth-token-ttl': String(AUTH_TOKEN_TTL_S_DEFAULT),
  // etcd's default is 2^32-1 (no limit); quorumkv enforces one per connection (docs/operations.md).
  'max-concurrent-streams': String(MAX_CONCURRENT_STREAMS_DEFAULT),
  'grpc-keepalive-interval': '2h',
  'grpc-keepalive-timeout': '20s',
  'max-tls-handshakes': String(MAX_TLS_HANDSHAKES_DEFAULT),
  'tls-handshake-timeout': '10s',
  // quorumkv's own (docs/operations.md "Beyond etcd": slow watchers).
  'max-watch-stream-buffer-bytes': String(WATCH_STREAM_BUFFER_BYTES_MAX_DEFAULT),
  'max-watch-buffer-bytes': String(WATCH_BUFFER_BYTES_MAX_DEFAULT),
  // quorumkv's own (docs/operations.md "Beyond etcd": large range answers).
  'max-range-answer-bytes': String(RANGE_ANSWER_BYTES_MAX_DEFAULT),
  'log-level': 'info',
  'initial-cluster': undefined, // "<name>=<initial-advertise-peer-urls>"
  'initial-cluster-state': 'new',
  'heartbeat-interval': '100',
  'election-timeout': '1000',
  'snapshot-count': '10000',
  'quota-backend-bytes': '0',
  'hot-value-bytes': String(HOT_VALUE_BYTES_DEFAULT),
  'auto-compaction-mode': 'periodic',
  'auto-compaction-retention': '0', // off, as etcd
  'experimental-watch-progress-notify-interval': `${WATCH_PROGRESS_NOTIFY_INTERVAL_MS_DEFAULT}ms`,
  'experimental-lease-checkpoint-interval': `${LEASE_CHECKPOINT_INTERVAL_MS_DEFAULT}ms`,
  'experimental-corrupt-check-time': '0s', // off, as etcd's default
  'cert-file': undefined,
  'key-file': undefined,
  'trusted-ca-file': undefined,
  'client-cert-auth': 'false',
  'auto-promote-learners': 'false',
  'initial-election-tick-advance': 'true', // as etcd
  'peer-cert-file': undefined,
  'peer-key-file': undefined,
  'peer-trusted-ca-file': undefined,
  'peer-client-cert-auth': 'false',
};

export interface ServerConfig {
  name: string;
  dataDir: string;
  listenClientUrls: string[];
  advertiseClientUrls: string[];
  listenPeerUrls: string[];
  initialAdvertisePeerUrls: string[];
  initialClusterToken: string;
  maxRequestBytes: number;
  maxTxnOps: number;
  /** bcrypt cost of new password hashes (etcd's --bcrypt-cost). */
  bcryptCost: number;
  /** How auth tokens are made (etcd's --auth-token). */
  authToken: AuthTokenConfig;
  /** Lifetime of a simple token without use, ms (etcd's --auth-token-ttl, in seconds). */
  authTokenTtlMs: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS of each client connection. */
  maxConcurrentStreams: number;
  /** Server keepalive of client connections (etcd's --grpc-keepalive-interval/-timeout), ms. */
  grpcKeepaliveIntervalMs: number;
  grpcKeepaliveTimeoutMs: number;
  /** TLS handshakes in progress per https:// client listener, and how long one may take (ms). */
  maxTlsHandshakes: number;
  tlsHandshakeTimeoutMs: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** name → peer URLs of every member the cluster starts with. */
  initialCluster: Map<string, string[]>;
  initialClusterState: 'new' | 'existing';
  /** Milliseconds between leader heartbeats = one Raft tick. */
  heartbeatIntervalMs: number;
  electionTimeoutMs: number;
  /** Applied entries between snapshots (after which older WAL segments are released). */
  snapshotCount: number;
  /** Backend quota in bytes (0 given = etcd's default 2 GiB; Infinity = no quota, from a negative
   *  flag value). */
  quotaBackendBytes: number;
  /** Value bytes kept in memory before older values move to the spill file (mvcc/spill.ts);
   *  undefined = every value stays in memory (--hot-value-bytes=-1). */
  hotValueBytes: number | undefined;
  /** --auto-compaction-mode and --auto-compaction-retention; undefined when the retention is 0
   *  (etcd's default: no automatic compaction). */
  autoCompaction: CompactionPolicy | undefined;
  /** How often idle synced watchers that asked for it get a progress notification. */
  watchProgressNotifyIntervalMs: number;
  /** Response bytes one watch stream / all watch streams together may hold for clients before
   *  their watchers catch up from history (quorumkv's own; api/watch_service.ts). Infinity: no
   *  member-wide bound. */
  watchStreamBufferBytesMax: number;
  watchBufferBytesMax: number;
  /** --max-range-answer-bytes. */
  rangeAnswerBytesMax: number;
  /** How often the leader checkpoints the remaining TTL of long leases through the log. */
  leaseCheckpointIntervalMs: number;
  /** The leader promotes learners that caught up (quorumkv's own; server/learner_promoter.ts). */
  autoPromoteLearners: boolean;
  /** etcd's --initial-election-tick-advance: once its peers are connected, a starting member
   *  advances its election timer to two ticks before the timeout (a restarted cluster elects a
   *  leader sooner). */
  initialElectionTickAdvance: boolean;
  /** Milliseconds between the leader's corruption checks (0: off). */
  corruptCheckTimeMs: number;
  /** Client-side TLS (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth); undefined
   *  without --cert-file/--key-file. */
  clientTls: TlsFiles | undefined;
  /** Peer-side TLS (--peer-*). */
  peerTls: TlsFiles | undefined;
}

/** The server flags `quorumkv snapshot restore` takes (they decide the restored member's identity
 *  as they would a new member's), and quorumctl's `snapshot restore` passes on to it. */
export const SNAPSHOT_RESTORE_FLAGS: readonly string[] = ['data-dir', 'name', 'initial-cluster', 'initial-cluster-token', 'initial-advertise-peer-urls'];

/** Splits argv into flag → raw string. Accepts `--flag value`, `--flag=value`, `-flag` and bare
 *  boolean flags. Unknown flags are an error: a typo must not silently fall back to a default. */
export function splitArgv(argv: readonly string[], known: ReadonlySet<string>, booleans: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([A-Za-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (flags look like --name=value)`);
    const name = m[1]!;
    if (!known.has(name)) throw new ConfigError(`unknown flag --${name}`);
    let value = m[2];
    if (value === undefined) {
      if (booleans.has(name)) value = 'true';
      else {
        const next = argv[i + 1];
        if (next === undefined || /^--?[A-Za-z]/.test(next)) throw new ConfigError(`flag --${name} needs a value`);
        value = next;
        i++;
      }
    }
    out.set(name, value);
  }
  return out;
}

function check<T>(name: string, schema: z.ZodType<T>, raw: string): T {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const why = r.error.issues.map((iss) => iss.message).join('; ');
    throw new ConfigError(`invalid --${name}=${JSON.stringify(raw)}: ${why}`);
  }
  return r.data;
}

/** etcd's --initial-cluster: "n1=http://a:2380,n1=http://b:2380,n2=http://c:2380". */
export function parseInitialCluster(raw: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const part of raw.split(',').map((p) => p.trim()).filter((p) => p.length > 0)) {
    const eq = part.indexOf('=');
    // An empty name is legal: `etcdctl member add` prints one for a member that has not started yet.
    if (eq < 0) throw new ConfigError(`invalid --initial-cluster=${JSON.stringify(raw)}: expected name=url pairs, got ${JSON.stringify(part)}`);
    const name = part.slice(0, eq);
    const url = part.slice(eq + 1);
    const checked = urlList.safeParse(url);
    if (!checked.success) throw new ConfigError(`invalid --initial-cluster=${JSON.stringify(raw)}: ${JSON.stringify(url)} is not a URL like http://127.0.0.1:2380`);
    out.set(name, [...(out.get(name) ?? []), ...checked.data]);
  }
  if (out.size === 0) throw new ConfigError('invalid --initial-cluster: no members');
  return out;
}

/** The YAML parser (70 modules) loads only for a --config-file. */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use (util/lazy_module.ts)
const yaml = lazyModule(() => require('yaml') as typeof import('yaml'));

/** Keys of a --config-file: etcd's YAML config uses the flag names as keys. */
const configFileSchema = z
  .record(z.string(), z.union([z.string(), z.number(), z.boolean()]).nullable())
  .refine((o) => !Array.isArray(o), 'expected a mapping of flag names to values');

export function readConfigFile(file: string): Map<string, string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read --config-file=${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = yaml().parse(text);
  } catch (err) {
    throw new ConfigError(`--config-file=${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const r = configFileSchema.safeParse(doc ?? {});
  if (!r.success) throw new ConfigError(`--config-file=${file}: ${r.error.issues.map((i) => i.message).join('; ')}`);
  const known = new Set(Object.keys(flagSchemas));
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(r.data)) {
    if (!known.has(k)) throw new ConfigError(`--config-file=${file}: unknown key ${JSON.stringify(k)}`);
    if (v !== null) out.set(k, String(v));
  }
  return out;
}

/** One side's TLS files: cert and key come together (etcd: "KeyFile and CertFile must both be
 *  present"); a CA or client-cert auth without them is refused rather than silently ignored. */
function tlsFiles(prefix: '' | 'peer-', certFile: string | undefined, keyFile: string | undefined, trustedCaFile: string | undefined, clientCertAuth: boolean): TlsFiles | undefined {
  if (certFile === undefined && keyFile === undefined) {
    if (trustedCaFile !== undefined || clientCertAuth) {
      throw new ConfigError(`--${prefix}${trustedCaFile !== undefined ? 'trusted-ca-file' : 'client-cert-auth'} needs --${prefix}cert-file and --${prefix}key-file`);
    }
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError(`--${prefix}cert-file and --${prefix}key-file must both be given (got only --${prefix}${certFile === undefined ? 'key-file' : 'cert-file'})`);
  }
  return { certFile, keyFile, trustedCaFile, clientCertAuth };
}

/** https:// URLs need the matching side's certificate and key. */
function checkTlsUrls(cfg: ServerConfig): void {
  const https = (urls: readonly string[]) => urls.find((u) => u.startsWith('https:'));
  const client = https(cfg.listenClientUrls);
  if (client !== undefined && !cfg.clientTls) throw new ConfigError(`--listen-client-urls ${client} is https: it needs --cert-file and --key-file`);
  const peer = https(cfg.listenPeerUrls);
  if (peer !== undefined && !cfg.peerTls) throw new ConfigError(`--listen-peer-urls ${peer} is https: it needs --peer-cert-file and --peer-key-file`);
}

/** etcd 3.4's quota choice: 0 → DefaultQuotaBytes, negative → quota disabled. */
function quotaFromFlag(n: number): number {
  if (n === 0) return QUOTA_BACKEND_BYTES_DEFAULT;
  return n < 0 ? Infinity : n;
}

function autoCompactionPolicy(mode: 'periodic' | 'revision', raw: string): CompactionPolicy | undefined {
  const retention = parseRetention(mode, raw);
  if (typeof retention === 'string') throw new ConfigError(`invalid --auto-compaction-retention=${JSON.stringify(raw)}: ${retention}`);
  return retention > 0 ? { mode, retention } : undefined;
}

export function parseServerFlags(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const known = new Set([...Object.keys(flagSchemas), 'config-file']);
  let raw = splitArgv(argv, known, BOOLEAN_FLAGS);
  const configFile = raw.get('config-file') ?? env.ETCD_CONFIG_FILE;
  // As etcd: with a config file, other flags and environment variables are ignored.
  if (configFile !== undefined) {
    raw = readConfigFile(configFile);
    env = {};
  }
  // etcd also reads every flag from ETCD_<FLAG_NAME> environment variables; flags win.
  for (const name of known) {
    const envName = 'ETCD_' + name.toUpperCase().replace(/-/g, '_');
    if (!raw.has(name) && env[envName] !== undefined) raw.set(name, env[envName]!);
  }
  const get = <N extends FlagName>(name: N): z.output<(typeof flagSchemas)[N]> | undefined => {
    const v = raw.get(name) ?? defaults[name];
    return v === undefined ? undefined : (check(name, flagSchemas[name] as z.ZodType, v) as z.output<(typeof flagSchemas)[N]>);
  };
  const name = get('name')!;
  const listenClientUrls = get('listen-client-urls')!;
  const listenPeerUrls = get('listen-peer-urls')!;
  const advertisePeerUrls = get('initial-advertise-peer-urls') ?? listenPeerUrls;
  const clusterRaw = raw.get('initial-cluster');
  const initialCluster = clusterRaw !== undefined ? parseInitialCluster(check('initial-cluster', flagSchemas['initial-cluster'], clusterRaw)) : new Map([[name, advertisePeerUrls]]);
  if (!initialCluster.has(name)) {
    throw new ConfigError(`invalid --initial-cluster: it has no member named ${JSON.stringify(name)} (this member's --name)`);
  }
  const cfg: ServerConfig = {
    name,
    dataDir: get('data-dir') ?? `${name}.etcd`,
    listenClientUrls,
    advertiseClientUrls: get('advertise-client-urls') ?? listenClientUrls,
    listenPeerUrls,
    initialAdvertisePeerUrls: advertisePeerUrls,
    initialCluster,
    initialClusterState: get('initial-cluster-state')!,
    initialClusterToken: get('initial-cluster-token')!,
    maxRequestBytes: get('max-request-bytes')!,
    maxTxnOps: get('max-txn-ops')!,
    bcryptCost: get('bcrypt-cost')!,
    authToken: get('auth-token')!,
    authTokenTtlMs: get('auth-token-ttl')! * 1000,
    maxConcurrentStreams: get('max-concurrent-streams')!,
    grpcKeepaliveIntervalMs: get('grpc-keepalive-interval')!,
    grpcKeepaliveTimeoutMs: get('grpc-keepalive-timeout')!,
    maxTlsHandshakes: get('max-tls-handshakes')!,
    tlsHandshakeTimeoutMs: get('tls-handshake-timeout')!,
    logLevel: get('log-level')!,
    heartbeatIntervalMs: get('heartbeat-interval')!,
    electionTimeoutMs: get('election-timeout')!,
    snapshotCount: get('snapshot-count')!,
    quotaBackendBytes: quotaFromFlag(get('quota-backend-bytes')!),
    hotValueBytes: get('hot-value-bytes')! < 0 ? undefined : get('hot-value-bytes')!,
    autoCompaction: autoCompactionPolicy(get('auto-compaction-mode')!, get('auto-compaction-retention')!),
    watchProgressNotifyIntervalMs: get('experimental-watch-progress-notify-interval')!,
    watchStreamBufferBytesMax: get('max-watch-stream-buffer-bytes')!,
    watchBufferBytesMax: get('max-watch-buffer-bytes')! === 0 ? Infinity : get('max-watch-buffer-bytes')!,
    rangeAnswerBytesMax: get('max-range-answer-bytes')!,
    leaseCheckpointIntervalMs: get('experimental-lease-checkpoint-interval')!,
    corruptCheckTimeMs: get('experimental-corrupt-check-time')!,
    autoPromoteLearners: get('auto-promote-learners')!,
    initialElectionTickAdvance: get('initial-election-tick-advance')!,
    clientTls: tlsFiles('', get('cert-file'), get('key-file'), get('trusted-ca-file'), get('client-cert-auth')!),
    peerTls: tlsFiles('peer-', get('peer-cert-file'), get('peer-key-file'), get('peer-trusted-ca-file'), get('peer-client-cert-auth')!),
  };
  checkTlsUrls(cfg);
  // A key that does not match its certificate, or a file that is not PEM, fails here in one line.
  try {
    if (cfg.clientTls) loadTls(cfg.clientTls, '');
    if (cfg.peerTls) loadTls(cfg.peerTls, 'peer-');
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (cfg.watchBufferBytesMax < cfg.watchStreamBufferBytesMax) {
    throw new ConfigError(
      `invalid --max-watch-buffer-bytes=${cfg.watchBufferBytesMax}: must be 0 (no bound) or at least --max-watch-stream-buffer-bytes (${cfg.watchStreamBufferBytesMax})`,
    );
  }
  if (cfg.electionTimeoutMs < 5 * cfg.heartbeatIntervalMs) {
    throw new ConfigError(
      `invalid --election-timeout=${cfg.electionTimeoutMs}: must be at least 5 times --heartbeat-interval (${cfg.heartbeatIntervalMs})`,
    );
  }
  return cfg;
}
