#!/usr/bin/env node
// quorumctl: a small etcdctl-like client for quorumkv (and etcd), for machines without etcdctl.
// Same command names, flags and "simple" output as etcdctl v3, so that people feel at home; exit
// code 0 on success and 1 on any error (printed as `Error: <etcd's message>`), 2 on bad usage.
//
// Layout: quorumctl/args.ts (flag parsing), client.ts (endpoint choice, gRPC calls, errors),
// kv.ts, lease.ts, cluster.ts (member, endpoint), snapshot.ts, check.ts + hashes.ts (`check`),
// format.ts (output); ../progress.ts.
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ConfigError } from '../config/flags';
import { flagDurationMs, parseArgs, UsageError, type FlagSpec, type ParsedArgs } from './quorumctl/args';
import { CommandError, Connection, splitEndpoints, type ConnectionOptions } from './quorumctl/client';
import { outputFormat } from './quorumctl/format';
import { delCommand, getCommand, putCommand, watchCommand } from './quorumctl/kv';
import { leaseCommand } from './quorumctl/lease';
import { endpointCommand, memberCommand } from './quorumctl/cluster';
import { RESTORE_FLAGS, snapshotCommand } from './quorumctl/snapshot';
import { CHECK_BOOLEANS, CHECK_FLAGS, checkCommand } from './quorumctl/check';

const USAGE = `Usage: quorumctl [--endpoints=127.0.0.1:2379[,...]] [--dial-timeout=2s] [--command-timeout=5s] [-w simple|json]
                 [--cacert=CA] [--cert=CERT --key=KEY] COMMAND

Commands:
  get KEY [--prefix] [--rev N] [--limit N] [--keys-only] [--consistency l|s]
  put KEY [VALUE] [--lease ID]            (VALUE from stdin if omitted)
  del KEY [--prefix]
  watch KEY [--prefix] [--rev N]          (prints events until interrupted)
  lease grant TTL | revoke ID | timetolive ID [--keys] | keep-alive ID | list
  member list | add NAME --peer-urls URL[,URL] [--learner] | remove ID | promote ID
  endpoint status | health                (every endpoint in --endpoints)
  snapshot save FILE
  snapshot restore FILE --data-dir DIR [--name N] [--initial-cluster ...] [--initial-cluster-token T]
                                        [--initial-advertise-peer-urls URL] [--bump-revision=N (default 1e9; 0: none)]
  check linearizability [--duration=30s] [--clients=8] [--keys=8] [--prefix=__quorumctl_check/]
                        [--serializable] [--check-timeout=2m]
                                        (concurrent reads/puts/CAS on a scratch prefix, then a
                                         linearizability check; exit 0 ok, 1 violation, 3 undecided)
  check hashes                          (HashKV of every member at one revision; exit 1 on mismatch)
Lease and member IDs are hex, as printed.
`;

const FLAGS: FlagSpec = {
  booleans: ['prefix', 'keys-only', 'keys', 'learner', 'help'],
  values: ['endpoints', 'dial-timeout', 'command-timeout', 'write-out', 'cacert', 'cert', 'key', 'rev', 'limit', 'lease', 'peer-urls', 'consistency', ...RESTORE_FLAGS],
  aliases: { w: 'write-out', h: 'help' },
};

/** `check` takes --keys as a number (elsewhere it is lease timetolive's boolean). */
const CHECK_SPEC: FlagSpec = {
  booleans: [...FLAGS.booleans.filter((f) => f !== 'keys'), ...CHECK_BOOLEANS],
  values: [...FLAGS.values, ...CHECK_FLAGS],
  aliases: FLAGS.aliases,
};

/** etcdctl's TLS flags: TLS when any of them is given or an endpoint is https:// (the system's
 *  roots verify the server without --cacert); --cert and --key go together. */
function parseCommandLine(argv: readonly string[]): ParsedArgs {
  let asCheck: ParsedArgs | UsageError;
  try {
    asCheck = parseArgs(argv, CHECK_SPEC);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    asCheck = e;
  }
  if (!(asCheck instanceof UsageError) && asCheck.positional[0] === 'check') return asCheck;
  const a = parseArgs(argv, FLAGS);
  // A `check` command line that its own flags refused: that refusal is the one to show.
  if (a.positional[0] === 'check' && asCheck instanceof UsageError) throw asCheck;
  return a;
}

function tlsCredentials(flags: ReadonlyMap<string, string>, httpsEndpoint: boolean): grpc.ChannelCredentials | undefined {
  const [ca, cert, key] = (['cacert', 'cert', 'key'] as const).map((f) => flags.get(f));
  if (ca === undefined && cert === undefined && key === undefined && !httpsEndpoint) return undefined;
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--cert and --key must be given together');
  const read = (flag: string, file: string | undefined) => {
    if (file === undefined) return null;
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new UsageError(`cannot read --${flag}=${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  };
  return grpc.credentials.createSsl(read('cacert', ca), read('key', key), read('cert', cert));
}

export async function main(argv: readonly string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let conn: Connection | undefined;
  try {
    const a = parseCommandLine(argv);
    const [cmd, ...rest] = a.positional;
    if (cmd === undefined || cmd === 'help' || a.flags.has('help')) {
      out.write(USAGE);
      return cmd === undefined && !a.flags.has('help') ? 2 : 0;
    }
    const sub = { ...a, positional: rest };
    const format = outputFormat(a.flags.get('write-out'));
    const rawEndpoints = a.flags.get('endpoints') ?? process.env.ETCDCTL_ENDPOINTS ?? '127.0.0.1:2379';
    const endpoints = splitEndpoints(rawEndpoints);
    const opts: ConnectionOptions = {
      dialTimeoutMs: flagDurationMs(a, 'dial-timeout', 2000),
      commandTimeoutMs: flagDurationMs(a, 'command-timeout', 5000),
      credentials: tlsCredentials(a.flags, /(^|,)\s*https:\/\//i.test(rawEndpoints)),
    };
    const connect = async () => (conn = await Connection.open(endpoints, opts));
    switch (cmd) {
      case 'get':
        await getCommand(await connect(), sub, format, out);
        break;
      case 'put':
        await putCommand(await connect(), sub, format, out);
        break;
      case 'del':
        await delCommand(await connect(), sub, format, out);
        break;
      case 'watch':
        await watchCommand(await connect(), sub, format, out);
        break;
      case 'lease':
        await leaseCommand(await connect(), sub, format, out);
        break;
      case 'member':
        await memberCommand(await connect(), sub, format, out);
        break;
      case 'endpoint':
        await endpointCommand(endpoints, opts, sub, format, out, err);
        break;
      case 'snapshot':
        return await snapshotCommand(connect, sub, out);
      case 'check':
        return await checkCommand(endpoints, opts, sub, out, err);
      default:
        throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    }
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      err.write(`Error: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    err.write(`Error: ${e instanceof CommandError || e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    conn?.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // A watch or keep-alive interrupted by a signal must exit even if grpc-js keeps a handle.
      setImmediate(() => process.exit(code)).unref();
    },
    (e) => {
      process.stderr.write(`Error: ${String(e)}\n`);
      process.exit(1);
    },
  );
}
