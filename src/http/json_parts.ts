// A protobuf message given in parts (UnaryCall.respondInParts: a large Range answer, encoded slice
// by slice) → its JSON as the gateway writes it (json_pb.ts messageOut), produced part by part so
// that the gateway streams the answer instead of converting it whole in one synchronous pass.
//
// Parts are whole top-level fields, in field-number order, for a Range; a part may also end in
// the middle of a field (a Txn's nested answers): the bytes after the last complete field wait for
// the rest of it. Each run of complete fields is decoded as a message of its own (a protobuf
// message is the concatenation of its fields) and written as those fields' JSON; a repeated field
// spread over several parts stays one JSON array. The text is the same as JSON.stringify of
// messageOut of the whole message (test/http/json_parts.test.ts).
import type protobuf from 'protobufjs';
import { assert } from '../util/assert';
import { messageOut } from './json_pb';

export class PartsToJson {
  /** Bytes after the last complete field, waiting for the rest of their field. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the pending field needs in all, once its tag and length were read (-1: unknown). */
  private need = -1;
  private opened = false;
  private anyField = false;
  /** The repeated field whose JSON array is open (continued by the next part). */
  private openArray: string | undefined = undefined;
  private lastField = -1;
  private readonly fieldIndex = new Map<string, number>();

  constructor(private readonly type: protobuf.Type) {
    type.fieldsArray.forEach((f, i) => this.fieldIndex.set(f.name, i));
  }

  /** The JSON text of the fields this part completes ('' when none). */
  push(part: Buffer): string {
    if (this.pendingBytes > 0 && this.need >= 0 && this.pendingBytes + part.length < this.need) {
      // The pending field is still incomplete: no copy until it is (no quadratic joining).
      this.pending.push(part);
      this.pendingBytes += part.length;
      return this.opened ? '' : this.open();
    }
    const buf = this.pendingBytes > 0 ? Buffer.concat([...this.pending, part]) : part;
    const complete = completeFieldsEnd(buf);
    const rest = buf.subarray(complete);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    this.need = rest.length > 0 ? fieldBytesIfKnown(rest) : -1;
    let out = this.opened ? '' : this.open();
    if (complete > 0) out += this.fields(buf.subarray(0, complete));
    return out;
  }

  /** The JSON text that closes the message (every part pushed). */
  end(): string {
    assert(this.pendingBytes === 0, 'json parts: the message ended within a field');
    let out = this.opened ? '' : this.open();
    if (this.openArray !== undefined) out += ']';
    this.openArray = undefined;
    return out + '}';
  }

  private open(): string {
    this.opened = true;
    return '{';
  }

  private fields(bytes: Buffer): string {
    const obj = messageOut(this.type, this.type.decode(bytes));
    let out = '';
    for (const [name, value] of Object.entries(obj)) {
      const i = this.fieldIndex.get(name)!;
      if (Array.isArray(value) && this.openArray === name) {
        // One join: a flat string, not a chain of concatenations the writer must flatten.
        if (value.length > 0) out += ',' + value.map((e) => JSON.stringify(e)).join(',');
        continue;
      }
      assert(i > this.lastField, `json parts: field ${name} out of field-number order`);
      this.lastField = i;
      if (this.openArray !== undefined) out += ']';
      this.openArray = undefined;
      out += (this.anyField ? ',' : '') + JSON.stringify(name) + ':';
      this.anyField = true;
      if (Array.isArray(value)) {
        out += '[' + value.map((e) => JSON.stringify(e)).join(',');
        this.openArray = name;
      } else out += JSON.stringify(value);
    }
    return out;
  }
}

/** A varint at buf[off]: [value, end], or undefined when it runs past the buffer. Values above
 *  2^53 lose precision, which only matters for lengths (never that large here). */
function readVarint(buf: Buffer, off: number): [number, number] | undefined {
  let v = 0;
  let mul = 1;
  for (let i = off; i < buf.length && i < off + 10; i++) {
    const b = buf[i]!;
    v += (b & 0x7f) * mul;
    if (b < 0x80) return [v, i + 1];
    mul *= 128;
  }
  if (buf.length >= off + 10) throw new Error('json parts: a varint longer than 10 bytes');
  return undefined;
}

/** The end of the field starting at buf[off], or undefined when it is not all there. */
function fieldEnd(buf: Buffer, off: number): number | undefined {
  const tag = readVarint(buf, off);
  if (tag === undefined) return undefined;
  const [key, at] = tag;
  let end: number;
  switch (key & 7) {
    case 0: {
      const v = readVarint(buf, at);
      if (v === undefined) return undefined;
      end = v[1];
      break;
    }
    case 1:
      end = at + 8;
      break;
    case 2: {
      const len = readVarint(buf, at);
      if (len === undefined) return undefined;
      end = len[1] + len[0];
      break;
    }
    case 5:
      end = at + 4;
      break;
    default:
      throw new Error(`json parts: wire type ${key & 7} is not one this gateway writes`);
  }
  return end <= buf.length ? end : undefined;
}

/** The end of the run of complete fields at the start of buf. */
export function completeFieldsEnd(buf: Buffer): number {
  let off = 0;
  // Each field takes at least one byte: at most buf.length turns.
  while (off < buf.length) {
    const end = fieldEnd(buf, off);
    if (end === undefined) return off;
    assert(end > off, 'json parts: a field of no bytes');
    off = end;
  }
  return off;
}

/** The whole size of the (incomplete) field at the start of buf once its header is there; -1
 *  while the header itself is incomplete or the size is not in it. */
function fieldBytesIfKnown(buf: Buffer): number {
  const tag = readVarint(buf, 0);
  if (tag === undefined || (tag[0] & 7) !== 2) return -1;
  const len = readVarint(buf, tag[1]);
  return len === undefined ? -1 : len[1] + len[0];
}
