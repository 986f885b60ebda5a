// A strict JSON parser (RFC 8259) for the gateway, with two differences from JSON.parse that the
// gateway needs:
//   * numbers keep their source text (JsonNumber), so a 64-bit ID sent as a JSON number is not
//     rounded to a double on the way in (etcd's Go gateway parses them exactly);
//   * objects are Maps (no prototype, so a "__proto__" key is just a key), and a body may hold a
//     sequence of values (a watch or keepalive stream), parsed one at a time; a value cut off by
//     the end of the text is reported as incomplete, so the caller can wait for more bytes.
// Error messages follow Go's encoding/json, which is what etcd's gateway answers with.

export class JsonNumber {
  constructor(readonly text: string) {}
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | Map<string, JsonValue>;

export class JsonSyntaxError extends Error {}
/** The text ended inside a value: more input may complete it. */
export class JsonIncomplete extends Error {}

/** Nesting deeper than this is refused (a bound on recursion; etcd's messages nest 4-5 levels). */
export const JSON_DEPTH_MAX = 64;

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

function describe(ch: string): string {
  return ch === "'" ? "'\\''" : `'${ch}'`;
}

class Parser {
  pos: number;
  constructor(
    private readonly s: string,
    start: number,
  ) {
    this.pos = start;
  }

  skipWs(): void {
    while (this.pos < this.s.length && WS.has(this.s.charCodeAt(this.pos))) this.pos++;
  }

  private need(): string {
    if (this.pos >= this.s.length) throw new JsonIncomplete('unexpected EOF');
    return this.s[this.pos]!;
  }

  value(depth: number, context = 'looking for beginning of value'): JsonValue {
    if (depth > JSON_DEPTH_MAX) throw new JsonSyntaxError(`exceeded max depth ${JSON_DEPTH_MAX}`);
    this.skipWs();
    const c = this.need();
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (c === word[0]) {
        for (let i = 0; i < word.length; i++) {
          const d = this.need();
          if (d !== word[i]) throw new JsonSyntaxError(`invalid character ${describe(d)} in literal ${word} (expecting '${word[i]}')`);
          this.pos++;
        }
        return v;
      }
    }
    throw new JsonSyntaxError(`invalid character ${describe(c)} ${context}`);
  }

  private object(depth: number): Map<string, JsonValue> {
    const m = new Map<string, JsonValue>();
    this.pos++; // {
    this.skipWs();
    if (this.need() === '}') return (this.pos++, m);
    for (;;) {
      this.skipWs();
      const c = this.need();
      if (c !== '"') throw new JsonSyntaxError(`invalid character ${describe(c)} looking for beginning of object key string`);
      const key = this.string();
      this.skipWs();
      const colon = this.need();
      if (colon !== ':') throw new JsonSyntaxError(`invalid character ${describe(colon)} after object key`);
      this.pos++;
      m.set(key, this.value(depth + 1));
      this.skipWs();
      const sep = this.need();
      this.pos++;
      if (sep === '}') return m;
      if (sep !== ',') throw new JsonSyntaxError(`invalid character ${describe(sep)} after object key:value pair`);
    }
  }

  private array(depth: number): JsonValue[] {
    const a: JsonValue[] = [];
    this.pos++; // [
    this.skipWs();
    if (this.need() === ']') return (this.pos++, a);
    for (;;) {
      a.push(this.value(depth + 1));
      this.skipWs();
      const sep = this.need();
      this.pos++;
      if (sep === ']') return a;
      if (sep !== ',') throw new JsonSyntaxError(`invalid character ${describe(sep)} after array element`);
    }
  }

  private string(): string {
    const s = this.s;
    let out = '';
    let i = ++this.pos; // opening quote
    let run = i;
    for (;;) {
      if (i >= s.length) throw new JsonIncomplete('unexpected EOF');
      const code = s.charCodeAt(i);
      if (code === 0x22) break;
      if (code < 0x20) throw new JsonSyntaxError(`invalid character ${describe(s[i]!)} in string literal`);
      if (code !== 0x5c) {
        i++;
        continue;
      }
      out += s.slice(run, i);
      if (i + 1 >= s.length) throw new JsonIncomplete('unexpected EOF');
      const e = s[i + 1]!;
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e in simple) {
        out += simple[e];
        i += 2;
      } else if (e === 'u') {
        if (i + 6 > s.length) throw new JsonIncomplete('unexpected EOF');
        const hex = s.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new JsonSyntaxError(`invalid character in \\u hexadecimal character escape`);
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else {
        throw new JsonSyntaxError(`invalid character ${describe(e)} in string escape code`);
      }
      run = i;
    }
    out += s.slice(run, i);
    this.pos = i + 1;
    return out;
  }

  private number(): JsonNumber {
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.s);
    if (!m || m[0] === '-') {
      if (this.pos + 1 >= this.s.length) throw new JsonIncomplete('unexpected EOF');
      throw new JsonSyntaxError(`invalid character ${describe(this.s[this.pos + 1]!)} in numeric literal`);
    }
    this.pos += m[0].length;
    // A number at the very end of the text may continue in the next chunk.
    if (this.pos >= this.s.length) throw new JsonIncomplete('unexpected EOF');
    return new JsonNumber(m[0]);
  }
}

/** Parses one whole document (a unary request body): exactly one value, then only whitespace. */
export function parseJson(text: string): JsonValue {
  const p = new Parser(text + ' ', 0); // the pad lets a number end the document
  let v: JsonValue;
  try {
    v = p.value(0);
  } catch (err) {
    if (err instanceof JsonIncomplete) throw new JsonSyntaxError('unexpected EOF');
    throw err;
  }
  p.skipWs();
  if (p.pos < text.length) throw new JsonSyntaxError(`invalid character ${describe(text[p.pos]!)} after top-level value`);
  return v;
}

/** Parses the next value of a stream of values starting at `pos`. Returns undefined if only
 *  whitespace is left; throws JsonIncomplete if the value is cut off by the end of the text. */
export function parseNext(text: string, pos: number, atEnd: boolean): { value: JsonValue; end: number } | undefined {
  const p = new Parser(atEnd ? text + ' ' : text, pos);
  p.skipWs();
  if (p.pos >= text.length) return undefined;
  try {
    const value = p.value(0);
    return { value, end: p.pos };
  } catch (err) {
    if (err instanceof JsonIncomplete && atEnd) throw new JsonSyntaxError('unexpected EOF');
    throw err;
  }
}
