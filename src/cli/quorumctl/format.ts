// Output in etcdctl's formats. "simple" is etcdctl's default (one value per line); "json" is its
// `-w json`: the response as Go's jsonpb-less encoding/json writes it — bytes as base64, int64 and
// uint64 as bare numbers, zero values left out.

export type OutputFormat = 'simple' | 'json';

export function outputFormat(raw: string | undefined): OutputFormat {
  if (raw === undefined || raw === 'simple') return 'simple';
  if (raw === 'json') return 'json';
  throw new Error(`unsupported output format ${JSON.stringify(raw)} (simple or json)`);
}

/** A decimal integer string written without quotes (uint64 does not fit a JS number). */
class Int {
  constructor(readonly digits: string) {}
}
const INT_MARK = '\u0000int:';

export function int(v: string | number | bigint | undefined | null): Int | undefined {
  const s = v === undefined || v === null ? '0' : String(v);
  return s === '0' ? undefined : new Int(s);
}

/** JSON.stringify that writes Int values as bare numbers and Buffers as base64. */
export function toJson(v: unknown): string {
  const text = JSON.stringify(v, function (this: Record<string, unknown>, key: string, value: unknown) {
    const raw = this[key];
    if (raw instanceof Int) return INT_MARK + raw.digits;
    if (Buffer.isBuffer(raw)) return raw.length === 0 ? undefined : raw.toString('base64');
    if (value === false || value === '' || (Array.isArray(value) && value.length === 0)) return undefined;
    return value;
  });
  return text.replace(/"\\u0000int:(-?[0-9]+)"/g, '$1');
}

export interface HeaderPb {
  cluster_id: string;
  member_id: string;
  revision: string;
  raft_term: string;
}

export function headerJson(h: HeaderPb | undefined): object | undefined {
  if (!h) return undefined;
  return { cluster_id: int(h.cluster_id), member_id: int(h.member_id), revision: int(h.revision), raft_term: int(h.raft_term) };
}

export interface KeyValuePb {
  key: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  value: Buffer;
  lease: string;
}

export function kvJson(kv: KeyValuePb): object {
  return {
    key: kv.key,
    create_revision: int(kv.create_revision),
    mod_revision: int(kv.mod_revision),
    version: int(kv.version),
    value: kv.value,
    lease: int(kv.lease),
  };
}

/** A signed int64 lease ID as etcdctl prints it: lowercase hex of its value. */
export function leaseHex(id: string | bigint): string {
  return BigInt(id).toString(16);
}

export function memberHex(id: string | bigint): string {
  return BigInt(id).toString(16);
}
