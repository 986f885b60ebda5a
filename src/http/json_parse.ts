// The gateway's JSON parser (RFC 8259): a push parser that is fed the body's chunks as they
// arrive and keeps its state between them, so every byte is scanned once however the body is
// cut (a parser that restarted from the start of a pending value on every chunk let 3,000
// one-byte chunks behind a 3.5 MB unfinished value stall the member for 40 s). Differences from
// JSON.parse that the gateway needs:
//   * numbers keep their source text (JsonNumber), so a 64-bit ID sent as a JSON number is not
//     rounded to a double (etcd's Go gateway parses them exactly); a number with more than
//     INTEGER_DIGITS_MAX digits is refused as it is read, before anything converts it;
//   * objects are Maps (no prototype: "__proto__" or "constructor" is just a key);
//   * a body may hold a sequence of values (a watch or keepalive stream), each handed over as
//     soon as it is complete;
//   * limits are checked while reading: nesting depth, the bytes of one pending value, and the
//     elements of one array (the gateway passes --max-txn-ops: a Txn's compare/success/failure
//     lists are refused at the first element over it, not after building 200k of them).
// Syntax error messages follow Go's encoding/json, which is what etcd's gateway answers with.

import { assert } from '../util/assert';

export class JsonNumber {
  constructor(readonly text: string) {}
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | Map<string, JsonValue>;

export class JsonSyntaxError extends Error {}

/** A limit of JsonLimits was exceeded while reading. */
export class JsonLimitError extends Error {
  constructor(
    readonly limit: 'value-bytes' | 'array-elements' | 'number-digits',
    message: string,
  ) {
    super(message);
  }
}

/** Nesting deeper than this is refused (etcd's messages nest 4-5 levels). */
export const JSON_DEPTH_MAX = 64;
/** int64/uint64 have at most 20 digits: a longer number can never be a valid field value. */
export const INTEGER_DIGITS_MAX = 20;
/** A number token (sign, digits, fraction, exponent) longer than this is refused. */
const NUMBER_CHARS_MAX = 64;

export interface JsonLimits {
  /** Bytes of one top-level value (whitespace between values does not count). */
  valueBytesMax: number;
  /** Elements of any one array. */
  arrayElementsMax: number;
  /** True for a unary body: one value, then only whitespace. */
  single: boolean;
}

const EMPTY = Buffer.alloc(0);
const STRING_BUFFER_BYTES_MIN = 1024;
const STRING_BUFFER_BYTES_KEPT_MAX = 64 * 1024;
const NUMBER_RE = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

const enum Mode {
  Top, // between top-level values
  Value, // a value must start here
  ArrayFirst, // after '[': a value or ']'
  ArraySep, // after an element: ',' or ']'
  ObjectFirst, // after '{': a key or '}'
  ObjectKey, // after ',': a key
  ObjectColon, // after a key
  ObjectSep, // after a member: ',' or '}'
  String,
  StringEscape, // after '\'
  StringHex, // inside \uXXXX
  Number,
  Literal,
  Done, // a single value was read; only whitespace may follow
}

interface Frame {
  readonly array: JsonValue[] | undefined;
  readonly object: Map<string, JsonValue> | undefined;
  key: string;
}

function isWs(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

function describe(b: number): string {
  const ch = String.fromCharCode(b);
  return ch === "'" ? "'\\''" : `'${ch}'`;
}

function isHex(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}

const ESCAPES = new Set([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74]); // " \ / b f n r t
const LITERALS: ReadonlyMap<number, readonly [string, JsonValue]> = new Map([
  [0x74, ['true', true]],
  [0x66, ['false', false]],
  [0x6e, ['null', null]],
]);

export class JsonStreamParser {
  private mode = Mode.Top;
  private readonly stack: Frame[] = [];
  /** Bytes of the current top-level value so far. */
  private valueBytes = 0;
  // String state: the raw bytes of earlier chunks (copied: a one-byte slice of a chunk would keep
  // the whole socket read buffer behind it alive), and where it started in this chunk.
  private strBytes: Buffer = EMPTY;
  private strLength = 0;
  private strStart = -1;
  private strEscaped = false;
  private strIsKey = false;
  private hexLeft = 0;
  // Number and literal state.
  private numText = '';
  private numDigits = 0;
  private numInteger = true;
  private literal = '';
  private literalValue: JsonValue = null;
  private literalPos = 0;

  constructor(
    private readonly limits: JsonLimits,
    private readonly onValue: (v: JsonValue) => void,
  ) {}

  /** True while a value is started and not finished. */
  get inValue(): boolean {
    return this.mode !== Mode.Top && this.mode !== Mode.Done;
  }

  /** Feeds the next chunk; completed top-level values go to onValue. Throws JsonSyntaxError or
   *  JsonLimitError (the parser is then unusable). */
  write(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.mode === Mode.String) {
        // The run of plain string bytes up to a quote, backslash or control character in one
        // tight loop (a base64 value is almost all of a big request).
        let j = i;
        while (j < n) {
          const c = chunk[j]!;
          if (c === 0x22 || c === 0x5c || c < 0x20) break;
          j++;
        }
        if (j > i) {
          this.countValueBytes(j - i);
          i = j;
          continue;
        }
      }
      const b = chunk[i]!;
      if (this.mode !== Mode.Top && this.mode !== Mode.Done) this.countValueBytes(1);
      if (this.step(chunk, i, b)) i++;
    }
    if (this.mode === Mode.String || this.mode === Mode.StringEscape || this.mode === Mode.StringHex) {
      // Inside a string: keep this chunk's part; the next chunk's part starts at its beginning.
      this.appendStringBytes(chunk.subarray(this.strStart));
      this.strStart = 0;
    }
  }

  private countValueBytes(n: number): void {
    this.valueBytes += n;
    if (this.valueBytes > this.limits.valueBytesMax) {
      throw new JsonLimitError('value-bytes', `quorumkv: a JSON request value larger than ${this.limits.valueBytesMax} bytes (--max-request-bytes, as JSON and base64)`);
    }
  }

  /** The end of the body: a value cut off is "unexpected EOF"; a number at the very end ends. */
  end(): void {
    if (this.mode === Mode.Number) this.finishNumber(-1);
    if (this.mode !== Mode.Top && this.mode !== Mode.Done) throw new JsonSyntaxError('unexpected EOF');
  }

  /** One byte in the current mode. Returns false if the byte must be seen again (it ended a
   *  number, which has no closing character of its own). */
  private step(chunk: Buffer, i: number, b: number): boolean {
    switch (this.mode) {
      case Mode.String:
        if (b === 0x22) this.finishString(chunk, i);
        else if (b === 0x5c) this.mode = Mode.StringEscape;
        else if (b < 0x20) throw new JsonSyntaxError(`invalid character ${describe(b)} in string literal`);
        return true;
      case Mode.StringEscape:
        this.strEscaped = true;
        if (b === 0x75) {
          this.mode = Mode.StringHex;
          this.hexLeft = 4;
        } else if (ESCAPES.has(b)) this.mode = Mode.String;
        else throw new JsonSyntaxError(`invalid character ${describe(b)} in string escape code`);
        return true;
      case Mode.StringHex:
        if (!isHex(b)) throw new JsonSyntaxError(`invalid character ${describe(b)} in \\u hexadecimal character escape`);
        if (--this.hexLeft === 0) this.mode = Mode.String;
        return true;
      case Mode.Number:
        if ((b >= 0x30 && b <= 0x39) || b === 0x2e || b === 0x65 || b === 0x45 || b === 0x2b || b === 0x2d) {
          this.numberChar(b);
          return true;
        }
        this.finishNumber(b);
        return false;
      case Mode.Literal:
        if (b !== this.literal.charCodeAt(this.literalPos)) {
          throw new JsonSyntaxError(`invalid character ${describe(b)} in literal ${this.literal} (expecting '${this.literal[this.literalPos]!}')`);
        }
        if (++this.literalPos === this.literal.length) this.complete(this.literalValue);
        return true;
      default:
        return this.structural(chunk, i, b);
    }
  }

  private structural(chunk: Buffer, i: number, b: number): boolean {
    if (isWs(b)) return true;
    switch (this.mode) {
      case Mode.Done:
        throw new JsonSyntaxError(`invalid character ${describe(b)} after top-level value`);
      case Mode.Top:
        this.valueBytes = 1;
        this.mode = Mode.Value;
        return this.startValue(chunk, i, b, 'looking for beginning of value');
      case Mode.Value:
        return this.startValue(chunk, i, b, 'looking for beginning of value');
      case Mode.ArrayFirst:
        if (b === 0x5d) return this.closeContainer();
        return this.startValue(chunk, i, b, 'looking for beginning of value');
      case Mode.ArraySep:
        if (b === 0x5d) return this.closeContainer();
        if (b !== 0x2c) throw new JsonSyntaxError(`invalid character ${describe(b)} after array element`);
        this.mode = Mode.Value;
        return true;
      case Mode.ObjectFirst:
        if (b === 0x7d) return this.closeContainer();
        return this.startKey(i, b);
      case Mode.ObjectKey:
        return this.startKey(i, b);
      case Mode.ObjectColon:
        if (b !== 0x3a) throw new JsonSyntaxError(`invalid character ${describe(b)} after object key`);
        this.mode = Mode.Value;
        return true;
      case Mode.ObjectSep:
        if (b === 0x7d) return this.closeContainer();
        if (b !== 0x2c) throw new JsonSyntaxError(`invalid character ${describe(b)} after object key:value pair`);
        this.mode = Mode.ObjectKey;
        return true;
      default:
        assert(false, `json: structural byte in mode ${String(this.mode)}`);
    }
  }

  private startValue(_chunk: Buffer, i: number, b: number, context: string): boolean {
    if (b === 0x7b || b === 0x5b) {
      if (this.stack.length >= JSON_DEPTH_MAX) throw new JsonSyntaxError(`exceeded max depth ${JSON_DEPTH_MAX}`);
      const isArray = b === 0x5b;
      this.stack.push({ array: isArray ? [] : undefined, object: isArray ? undefined : new Map<string, JsonValue>(), key: '' });
      this.mode = isArray ? Mode.ArrayFirst : Mode.ObjectFirst;
      return true;
    }
    if (b === 0x22) {
      this.startString(i, false);
      return true;
    }
    if (b === 0x2d || (b >= 0x30 && b <= 0x39)) {
      this.mode = Mode.Number;
      this.numText = '';
      this.numDigits = 0;
      this.numInteger = true;
      this.numberChar(b);
      return true;
    }
    const lit = LITERALS.get(b);
    if (lit) {
      this.mode = Mode.Literal;
      [this.literal, this.literalValue] = lit;
      this.literalPos = 1;
      return true;
    }
    throw new JsonSyntaxError(`invalid character ${describe(b)} ${context}`);
  }

  private startKey(i: number, b: number): boolean {
    if (b !== 0x22) throw new JsonSyntaxError(`invalid character ${describe(b)} looking for beginning of object key string`);
    this.startString(i, true);
    return true;
  }

  private startString(i: number, isKey: boolean): void {
    this.mode = Mode.String;
    this.strLength = 0;
    this.strStart = i + 1;
    this.strEscaped = false;
    this.strIsKey = isKey;
  }

  private finishString(chunk: Buffer, i: number): void {
    const last = chunk.subarray(this.strStart, i);
    let raw = last;
    if (this.strLength > 0) {
      this.appendStringBytes(last);
      raw = this.strBytes.subarray(0, this.strLength);
    }
    this.strLength = 0;
    this.strStart = -1;
    // The escapes were validated while scanning, so JSON.parse of the literal cannot fail.
    const s = this.strEscaped ? (JSON.parse(`"${raw.toString('utf8')}"`) as string) : raw.toString('utf8');
    // A long-lived stream keeps its parser: it does not keep a big value's buffer too.
    if (this.strBytes.length > STRING_BUFFER_BYTES_KEPT_MAX) this.strBytes = EMPTY;
    if (this.strIsKey) {
      this.stack[this.stack.length - 1]!.key = s;
      this.mode = Mode.ObjectColon;
    } else this.complete(s);
  }

  /** Appends to the string's bytes, growing the buffer by doubling (amortized O(1) per byte; at
   *  most twice the value's size, which valueBytesMax bounds). */
  private appendStringBytes(part: Buffer): void {
    const need = this.strLength + part.length;
    if (need > this.strBytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.strBytes.length, STRING_BUFFER_BYTES_MIN));
      this.strBytes.copy(grown, 0, 0, this.strLength);
      this.strBytes = grown;
    }
    part.copy(this.strBytes, this.strLength);
    this.strLength = need;
  }

  private numberChar(b: number): void {
    if (b === 0x2e || b === 0x65 || b === 0x45) this.numInteger = false;
    else if (b >= 0x30 && b <= 0x39 && this.numInteger && ++this.numDigits > INTEGER_DIGITS_MAX) {
      throw new JsonLimitError('number-digits', `json: cannot unmarshal number ${this.numText.slice(0, 24)}… (more than ${INTEGER_DIGITS_MAX} digits) into an integer field`);
    }
    if (this.numText.length >= NUMBER_CHARS_MAX) throw new JsonLimitError('number-digits', `json: number ${this.numText.slice(0, 24)}… longer than ${NUMBER_CHARS_MAX} characters`);
    this.numText += String.fromCharCode(b);
  }

  /** `next` is the byte after the number (-1 at the end of the body). */
  private finishNumber(next: number): void {
    const t = this.numText;
    if (!NUMBER_RE.test(t)) {
      if (next < 0 && /[-.eE+]$/.test(t)) throw new JsonSyntaxError('unexpected EOF');
      throw new JsonSyntaxError(`invalid character ${describe(next < 0 ? t.charCodeAt(t.length - 1) : next)} in numeric literal`);
    }
    this.complete(new JsonNumber(t));
  }

  private closeContainer(): boolean {
    const f = this.stack.pop()!;
    this.complete(f.array ?? f.object!);
    return true;
  }

  /** A value is complete: it goes into its container, or out if it is a top-level one. */
  private complete(v: JsonValue): void {
    const top = this.stack[this.stack.length - 1];
    if (top === undefined) {
      this.mode = this.limits.single ? Mode.Done : Mode.Top;
      this.valueBytes = 0;
      this.onValue(v);
      return;
    }
    if (top.array) {
      if (top.array.length >= this.limits.arrayElementsMax) {
        throw new JsonLimitError('array-elements', `quorumkv: a JSON list longer than ${this.limits.arrayElementsMax} elements (--max-txn-ops)`);
      }
      top.array.push(v);
      this.mode = Mode.ArraySep;
    } else {
      top.object!.set(top.key, v);
      this.mode = Mode.ObjectSep;
    }
  }
}

/** Parses one whole document (a unary request body, or a test's text): exactly one value. */
export function parseJson(text: string | Buffer, limits: Partial<JsonLimits> = {}): JsonValue {
  let out: JsonValue | undefined;
  let seen = false;
  const p = new JsonStreamParser({ valueBytesMax: Infinity, arrayElementsMax: Infinity, ...limits, single: true }, (v) => ((out = v), (seen = true)));
  p.write(typeof text === 'string' ? Buffer.from(text, 'utf8') : text);
  p.end();
  if (!seen) throw new JsonSyntaxError('unexpected EOF');
  return out!;
}
