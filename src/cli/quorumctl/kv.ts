// quorumctl get / put / del / watch.
import { flagBool, flagInt, parseHexId, UsageError, type ParsedArgs } from './args';
import { CommandError, toCommandError, type Connection } from './client';
import { headerJson, int, kvJson, toJson, type HeaderPb, type KeyValuePb, type OutputFormat } from './format';

/** etcd's prefix range end: the key with its last byte below 0xff incremented ("\0" = all keys). */
export function prefixEnd(key: Buffer): Buffer {
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

function rangeOf(a: ParsedArgs, key: string): { key: Buffer; range_end: Buffer } {
  const k = Buffer.from(key, 'utf8');
  if (!flagBool(a, 'prefix')) return { key: k, range_end: Buffer.alloc(0) };
  // etcdctl: `get "" --prefix` means every key.
  return k.length === 0 ? { key: Buffer.from([0]), range_end: Buffer.from([0]) } : { key: k, range_end: prefixEnd(k) };
}

interface RangeResponsePb {
  header: HeaderPb;
  kvs: KeyValuePb[];
  more: boolean;
  count: string;
}

export async function getCommand(c: Connection, a: ParsedArgs, format: OutputFormat, out: NodeJS.WritableStream): Promise<void> {
  if (a.positional.length !== 1) throw new UsageError('usage: quorumctl get KEY [--prefix] [--rev N] [--limit N] [--keys-only] [-w json]');
  const req = {
    ...rangeOf(a, a.positional[0]!),
    revision: flagInt(a, 'rev', 0),
    limit: flagInt(a, 'limit', 0),
    keys_only: flagBool(a, 'keys-only'),
    serializable: a.flags.get('consistency') === 's',
  };
  const r = await c.unary<RangeResponsePb>('KV', 'Range', req);
  if (format === 'json') {
    out.write(toJson({ header: headerJson(r.header), kvs: r.kvs.map(kvJson), more: r.more, count: int(r.count) }) + '\n');
    return;
  }
  // etcdctl's simple format: key line, value line (empty with --keys-only).
  for (const kv of r.kvs) out.write(`${kv.key.toString('utf8')}\n${kv.value.toString('utf8')}\n`);
}

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of process.stdin) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

export async function putCommand(c: Connection, a: ParsedArgs, format: OutputFormat, out: NodeJS.WritableStream): Promise<void> {
  const [key, value] = a.positional;
  if (key === undefined || a.positional.length > 2) throw new UsageError('usage: quorumctl put KEY [VALUE] [--lease ID] (VALUE from stdin if omitted)');
  const v = value !== undefined ? Buffer.from(value, 'utf8') : await readStdin();
  const lease = a.flags.has('lease') ? parseHexId(a.flags.get('lease'), 'lease').toString() : '0';
  const r = await c.unary<{ header: HeaderPb }>('KV', 'Put', { key: Buffer.from(key, 'utf8'), value: v, lease, prev_kv: false });
  out.write(format === 'json' ? toJson({ header: headerJson(r.header) }) + '\n' : 'OK\n');
}

export async function delCommand(c: Connection, a: ParsedArgs, format: OutputFormat, out: NodeJS.WritableStream): Promise<void> {
  if (a.positional.length !== 1) throw new UsageError('usage: quorumctl del KEY [--prefix]');
  const r = await c.unary<{ header: HeaderPb; deleted: string }>('KV', 'DeleteRange', rangeOf(a, a.positional[0]!));
  out.write(format === 'json' ? toJson({ header: headerJson(r.header), deleted: int(r.deleted) }) + '\n' : `${r.deleted}\n`);
}

interface WatchResponsePb {
  header: HeaderPb;
  created: boolean;
  canceled: boolean;
  cancel_reason: string;
  compact_revision: string;
  events: { type: number; kv: KeyValuePb }[];
}

/** Prints events until SIGINT/SIGTERM (exit 0) or until the server cancels the watch (exit 1). */
export async function watchCommand(c: Connection, a: ParsedArgs, format: OutputFormat, out: NodeJS.WritableStream): Promise<void> {
  if (a.positional.length !== 1) throw new UsageError('usage: quorumctl watch KEY [--prefix] [--rev N]');
  const call = c.client('Watch')['Watch']!() as import('@grpc/grpc-js').ClientDuplexStream<object, WatchResponsePb>;
  const create = { ...rangeOf(a, a.positional[0]!), start_revision: flagInt(a, 'rev', 0) };
  await new Promise<void>((resolve, reject) => {
    const stop = () => {
      call.cancel();
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    call.on('data', (r: WatchResponsePb) => {
      if (r.canceled) {
        const why = r.cancel_reason || (r.compact_revision !== '0' ? `etcdserver: mvcc: required revision has been compacted (compact revision ${r.compact_revision})` : 'watch canceled by the server');
        call.cancel();
        reject(new CommandError(why));
        return;
      }
      for (const ev of r.events) {
        if (format === 'json') {
          out.write(toJson({ Header: headerJson(r.header), Events: [{ type: ev.type === 1 ? 'DELETE' : undefined, kv: kvJson(ev.kv) }] }) + '\n');
          continue;
        }
        out.write(`${ev.type === 1 ? 'DELETE' : 'PUT'}\n${ev.kv.key.toString('utf8')}\n${ev.kv.value.toString('utf8')}\n`);
      }
    });
    call.on('error', (err) => {
      if ((err as { code?: number }).code === 1) return resolve(); // cancelled by us
      reject(toCommandError(err));
    });
    call.on('end', () => resolve());
    call.write({ create_request: create });
  });
}
