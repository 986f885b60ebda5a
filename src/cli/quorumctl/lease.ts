// quorumctl lease grant | revoke | timetolive | keep-alive | list, with etcdctl's messages.
import type * as grpc from '@grpc/grpc-js';
import { flagBool, parseHexId, UsageError, type ParsedArgs } from './args';
import { CommandError, toCommandError, type Connection } from './client';
import { headerJson, int, leaseHex, toJson, type HeaderPb, type OutputFormat } from './format';

const USAGE = 'usage: quorumctl lease grant TTL | revoke ID | timetolive ID [--keys] | keep-alive ID | list';

export async function leaseCommand(c: Connection, a: ParsedArgs, format: OutputFormat, out: NodeJS.WritableStream): Promise<void> {
  const [sub, arg, ...rest] = a.positional;
  if (rest.length > 0) throw new UsageError(USAGE);
  switch (sub) {
    case 'grant': {
      if (arg === undefined || !/^[0-9]+$/.test(arg)) throw new UsageError('usage: quorumctl lease grant TTL (seconds)');
      const r = await c.unary<{ header: HeaderPb; ID: string; TTL: string }>('Lease', 'LeaseGrant', { TTL: arg, ID: '0' }).catch((err) => {
        throw new CommandError(`failed to grant lease (${toCommandError(err).message})`);
      });
      if (format === 'json') return void out.write(toJson({ header: headerJson(r.header), ID: int(r.ID), TTL: int(r.TTL) }) + '\n');
      out.write(`lease ${leaseHex(r.ID)} granted with TTL(${r.TTL}s)\n`);
      return;
    }
    case 'revoke': {
      const id = parseHexId(arg, 'lease');
      const r = await c.unary<{ header: HeaderPb }>('Lease', 'LeaseRevoke', { ID: id.toString() }).catch((err) => {
        throw new CommandError(`failed to revoke lease (${toCommandError(err).message})`);
      });
      if (format === 'json') return void out.write(toJson({ header: headerJson(r.header) }) + '\n');
      out.write(`lease ${leaseHex(id)} revoked\n`);
      return;
    }
    case 'timetolive': {
      const id = parseHexId(arg, 'lease');
      const keys = flagBool(a, 'keys');
      const r = await c.unary<{ header: HeaderPb; ID: string; TTL: string; grantedTTL: string; keys: Buffer[] }>('Lease', 'LeaseTimeToLive', { ID: id.toString(), keys });
      if (format === 'json') {
        return void out.write(toJson({ header: headerJson(r.header), ID: int(r.ID), TTL: int(r.TTL), grantedTTL: int(r.grantedTTL), keys: r.keys }) + '\n');
      }
      if (Number(r.TTL) === -1) return void out.write(`lease ${leaseHex(id)} already expired\n`);
      const attached = keys ? `, attached keys([${r.keys.map((k) => k.toString('utf8')).join(' ')}])` : '';
      out.write(`lease ${leaseHex(id)} granted with TTL(${r.grantedTTL}s), remaining(${r.TTL}s)${attached}\n`);
      return;
    }
    case 'keep-alive':
      return keepAlive(c, parseHexId(arg, 'lease'), out);
    case 'list': {
      if (arg !== undefined) throw new UsageError(USAGE);
      const r = await c.unary<{ header: HeaderPb; leases: { ID: string }[] }>('Lease', 'LeaseLeases', {});
      if (format === 'json') return void out.write(toJson({ header: headerJson(r.header), leases: r.leases.map((l) => ({ ID: int(l.ID) })) }) + '\n');
      out.write(`found ${r.leases.length} leases\n`);
      for (const l of r.leases) out.write(`${leaseHex(l.ID)}\n`);
      return;
    }
    default:
      throw new UsageError(USAGE);
  }
}

/** Sends a keepalive every TTL/3 seconds (as the etcd client) and prints each answer, until
 *  SIGINT/SIGTERM or until the lease is gone ("expired or revoked", exit 0 as etcdctl). */
async function keepAlive(c: Connection, id: bigint, out: NodeJS.WritableStream): Promise<void> {
  const call = c.client('Lease')['LeaseKeepAlive']!() as grpc.ClientDuplexStream<object, { ID: string; TTL: string }>;
  let timer: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve, reject) => {
    const finish = () => {
      if (timer) clearTimeout(timer);
      process.off('SIGINT', finish);
      process.off('SIGTERM', finish);
      call.cancel();
      resolve();
    };
    process.once('SIGINT', finish);
    process.once('SIGTERM', finish);
    call.on('data', (r: { TTL?: string | number }) => {
      const ttl = Number(r.TTL);
      if (ttl <= 0) {
        out.write(`lease ${leaseHex(id)} expired or revoked.\n`);
        return finish();
      }
      out.write(`lease ${leaseHex(id)} keepalived with TTL(${ttl})\n`);
      timer = setTimeout(() => call.write({ ID: id.toString() }), Math.max(500, (ttl * 1000) / 3));
    });
    call.on('error', (err) => ((err as { code?: number }).code === 1 ? resolve() : reject(toCommandError(err))));
    call.write({ ID: id.toString() });
  });
}
