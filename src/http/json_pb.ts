// Protobuf messages <-> JSON as etcd's grpc-gateway writes and reads them (golang/protobuf jsonpb
// with OrigName: true, EmitDefaults: false):
//   * out: field names as in the .proto; int64/uint64 as decimal strings, int32 as numbers; bytes
//     as standard base64; enums by name; fields holding their default value (0, "", false, empty
//     bytes, empty lists, absent messages) are left out, as proto3 JSON does;
//   * in: a field may be named as in the .proto or in lowerCamelCase; int64 as a number or a
//     string; enums by name or number; null means "not set"; unknown fields are ignored (as
//     etcd's gateway does); a value of the wrong type or bad base64 is an error naming the field.
import protobuf from 'protobufjs';
import { JsonNumber, type JsonValue } from './json_parse';

/** A request the gateway cannot decode: answered with 400 and this message. */
export class JsonMappingError extends Error {}

const LONG_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const INT32_TYPES = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);
const UNSIGNED = new Set(['uint64', 'fixed64', 'uint32', 'fixed32']);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const BASE64_RE = /^[A-Za-z0-9+/]*$/;
/** "-" and 20 digits: the longest int64/uint64 text. */
const INTEGER_CHARS_MAX = 21;

// ---- in -------------------------------------------------------------------------------------

const fieldLookup = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();

function fieldsOf(type: protobuf.Type): Map<string, protobuf.Field> {
  let m = fieldLookup.get(type);
  if (!m) {
    m = new Map();
    for (const f of type.fieldsArray) {
      m.set(f.name, f);
      m.set(f.name.replace(/_([a-z0-9])/g, (_s, c: string) => c.toUpperCase()), f);
    }
    fieldLookup.set(type, m);
  }
  return m;
}

function kindOf(v: JsonValue): string {
  if (v === null) return 'null';
  if (v instanceof JsonNumber) return 'number';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Map) return 'object';
  return typeof v;
}

/** Go's base64.StdEncoding, strictly: padding required, "\r" and "\n" ignored. */
export function decodeBase64Strict(s: string, where: string): Buffer {
  const t = s.replace(/[\r\n]/g, '');
  const body = t.replace(/={1,2}$/, '');
  const bad = BASE64_RE.test(body) ? -1 : body.search(/[^A-Za-z0-9+/]/);
  if (bad >= 0 || t.length % 4 !== 0 || (t.length - body.length > 0 && body.length % 4 === 0)) {
    const at = bad >= 0 ? bad : Math.min(t.length, body.length - (body.length % 4));
    throw new JsonMappingError(`illegal base64 data at input byte ${at} (field ${where})`);
  }
  return Buffer.from(t, 'base64');
}

/** An enum's name as Go's generated code spells it (etcd's message): nested names joined by "_",
 *  "etcdserverpb.RangeRequest_SortOrder". */
function goEnumName(e: protobuf.Enum): string {
  const name = e.fullName.slice(1);
  const dot = name.indexOf('.');
  return name.slice(0, dot + 1) + name.slice(dot + 1).replace(/\./g, '_');
}

/** A client's text in an error message, cut short (a 3 MB string is not echoed back). */
function quoted(text: string): string {
  return JSON.stringify(text.length > 32 ? `${text.slice(0, 32)}…` : text);
}

function integerText(v: JsonValue, where: string, typeName: string): bigint {
  let text: string;
  if (v instanceof JsonNumber) text = v.text;
  else if (typeof v === 'string') text = v.trim();
  else throw new JsonMappingError(`json: cannot unmarshal ${kindOf(v)} into field ${where} of type ${typeName}`);
  // A sign and at most 20 digits, checked before any conversion: BigInt of a 3 MB digit string
  // took seconds of the event loop.
  if (text.length > INTEGER_CHARS_MAX || !/^-?[0-9]+$/.test(text)) {
    const why = /^-?[0-9]+$/.test(text) ? 'out of range' : 'not an integer';
    throw new JsonMappingError(`json: invalid value ${quoted(text)} for field ${where} of type ${typeName}: ${why}`);
  }
  return BigInt(text);
}

function scalarIn(field: protobuf.Field, v: JsonValue, where: string): unknown {
  const t = field.type;
  if (LONG_TYPES.has(t)) {
    const n = integerText(v, where, t);
    const [lo, hi] = UNSIGNED.has(t) ? [0n, UINT64_MAX] : [INT64_MIN, INT64_MAX];
    if (n < lo || n > hi) throw new JsonMappingError(`json: value ${n} out of range for field ${where} of type ${t}`);
    return n.toString();
  }
  if (INT32_TYPES.has(t)) {
    const n = integerText(v, where, t);
    const [lo, hi] = UNSIGNED.has(t) ? [0n, 2n ** 32n - 1n] : [-(2n ** 31n), 2n ** 31n - 1n];
    if (n < lo || n > hi) throw new JsonMappingError(`json: value ${n} out of range for field ${where} of type ${t}`);
    return Number(n);
  }
  if (t === 'double' || t === 'float') {
    if (v instanceof JsonNumber) return Number(v.text);
    if (v === 'NaN' || v === 'Infinity' || v === '-Infinity') return Number(v);
    throw new JsonMappingError(`json: cannot unmarshal ${kindOf(v)} into field ${where} of type ${t}`);
  }
  if (t === 'bool') {
    if (typeof v === 'boolean') return v;
    throw new JsonMappingError(`json: cannot unmarshal ${kindOf(v)} into field ${where} of type bool`);
  }
  if (t === 'string') {
    if (typeof v === 'string') return v;
    throw new JsonMappingError(`json: cannot unmarshal ${kindOf(v)} into field ${where} of type string`);
  }
  if (t === 'bytes') {
    if (typeof v === 'string') return decodeBase64Strict(v, where);
    throw new JsonMappingError(`json: cannot unmarshal ${kindOf(v)} into field ${where} of type bytes (base64 expected)`);
  }
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) {
    if (typeof v === 'string') {
      // Own names only: "constructor" or "__proto__" must not find Object.prototype's.
      const n = Object.hasOwn(rt.values, v) ? rt.values[v] : undefined;
      if (typeof n !== 'number') throw new JsonMappingError(`unknown value ${quoted(v)} for enum ${goEnumName(rt)}`);
      return n;
    }
    return Number(integerText(v, where, rt.fullName.slice(1)));
  }
  if (rt instanceof protobuf.Type) return messageIn(rt, v, where);
  throw new JsonMappingError(`field ${where}: unsupported type ${t}`);
}

/** A JSON value → a plain object protobufjs's Type.fromObject accepts (bytes as Buffers, 64-bit
 *  integers as decimal strings, enums as numbers). */
export function messageIn(type: protobuf.Type, v: JsonValue, where = ''): Record<string, unknown> {
  if (!(v instanceof Map)) throw new JsonMappingError(`json: cannot unmarshal ${kindOf(v)} into ${where || 'the request'} (a ${type.fullName.slice(1)} object)`);
  const out: Record<string, unknown> = {};
  const fields = fieldsOf(type);
  for (const [name, value] of v) {
    const f = fields.get(name);
    if (!f || value === null) continue;
    f.resolve();
    const path = where ? `${where}.${f.name}` : f.name;
    if (f.map) throw new JsonMappingError(`field ${path}: map fields are not supported by this gateway`);
    if (f.repeated) {
      if (!Array.isArray(value)) throw new JsonMappingError(`json: cannot unmarshal ${kindOf(value)} into field ${path} (a list)`);
      out[f.name] = value.map((e, i) => scalarIn(f, e, `${path}[${i}]`));
    } else {
      out[f.name] = scalarIn(f, value, path);
    }
  }
  return out;
}

// ---- out ------------------------------------------------------------------------------------

function longText(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string') return String(v);
  if (v && typeof v === 'object' && 'low' in v && 'high' in v) {
    const l = v as { low: number; high: number; unsigned?: boolean };
    const big = (BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0);
    return (l.unsigned ? big : BigInt.asIntN(64, big)).toString();
  }
  return String(v);
}

function isDefault(field: protobuf.Field, v: unknown): boolean {
  if (v === null || v === undefined) return true;
  if (field.partOf) return false; // a set oneof member is written even with a default value
  if (field.resolvedType instanceof protobuf.Type) return false;
  if (LONG_TYPES.has(field.type)) return longText(v) === '0';
  if (typeof v === 'number') return v === 0;
  if (typeof v === 'boolean') return !v;
  if (typeof v === 'string') return v === '';
  if (v instanceof Uint8Array) return v.length === 0;
  return false;
}

function scalarOut(field: protobuf.Field, v: unknown): unknown {
  const t = field.type;
  if (LONG_TYPES.has(t)) return longText(v);
  if (t === 'bytes') return Buffer.from(v as Uint8Array).toString('base64');
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) return rt.valuesById[v as number] ?? v;
  if (rt instanceof protobuf.Type) return messageOut(rt, v as protobuf.Message);
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return v;
}

/** A decoded message → the JSON object grpc-gateway would write for it. */
export function messageOut(type: protobuf.Type, m: protobuf.Message | Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const rec = m as unknown as Record<string, unknown>;
  for (const f of type.fieldsArray) {
    f.resolve();
    const v = rec[f.name];
    if (f.repeated) {
      if (!Array.isArray(v) || v.length === 0) continue;
      out[f.name] = v.map((e) => scalarOut(f, e));
    } else if (f.partOf) {
      // protobufjs names the set member of a oneof in a virtual field of the oneof's name.
      if (rec[f.partOf.name] === f.name && v !== null && v !== undefined) out[f.name] = scalarOut(f, v);
    } else if (!isDefault(f, v)) {
      out[f.name] = scalarOut(f, v);
    }
  }
  return out;
}
