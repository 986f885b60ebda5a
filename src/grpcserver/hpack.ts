// HPACK (RFC 7541): the decoder of request header blocks, and the encoder of our response blocks.
//
// Why our own: the decoder is on every request's path, and hpack.js (used before) had to be driven
// through its private members to avoid an object-mode stream per connection, and it built an
// object per field and new strings for every field. Here a block is decoded in one synchronous pass
// over the buffer: a field from the static or dynamic table costs no allocation (its strings are
// the table's), a literal costs its strings, and the fields land in two arrays reused from block to
// block. A gRPC unary call's second and later requests on a connection are mostly indexed fields.
//
// What the decoder enforces (each violation is an HpackError: a connection error COMPRESSION_ERROR
// in RFC 9113 §4.3, after which the decoder refuses further blocks, its table no longer known):
//   - indexes: 0 and indexes past the static + dynamic table are errors (§6.1, §2.3.3);
//   - dynamic table size updates only before the block's first field (§4.2) and never above the
//     size we advertised (our SETTINGS_HEADER_TABLE_SIZE, §6.3);
//   - integers of at most INTEGER_CONTINUATION_BYTES_MAX continuation bytes and INTEGER_MAX (§5.1
//     leaves the bound to us; §7.4 asks for one); strings and integers inside the block;
//   - Huffman strings with padding of at most 7 one-bits and no EOS (§5.2; huffman.ts).
// What it bounds without failing the connection: the decoded header list (RFC 9113 §6.5.2's size:
// name + value + 32 octets a field). Past listBytesMax the block is still decoded to its end,
// so that the dynamic table stays in step with the client's (§2.2), but no further field is kept:
// a small block of one-byte references to a large table entry costs a counter per byte, not a
// copy. The caller answers that request alone (h2_conn.ts: 431), as Go's HTTP/2 server does.
//
// Strings are latin1: one octet, one character (names and values are octets in HPACK; gRPC
// metadata is ASCII, binary values travel base64), so a string's length is its size in octets.
import { assert } from '../util/assert';
import { HUFFMAN_BAD_PADDING, HUFFMAN_EOS, huffmanDecode, huffmanDecodedBytesMax } from './huffman';

/** SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 9113 §6.5.2): what we advertise (we send no
 *  other), so the most a client may size its encoder's table to. */
export const HEADER_TABLE_BYTES_DEFAULT = 4096;
/** The largest table a decoder may be made for: its ring of entries is allocated up front. */
export const HEADER_TABLE_BYTES_MAX = 64 * 1024;
/** What an entry costs beyond its name and value (RFC 7541 §4.1; RFC 9113 counts fields so too). */
export const ENTRY_OVERHEAD_BYTES = 32;
/** Integers above this are refused: every integer we accept (an index, a string length, a table
 *  size) is far smaller, and a bound keeps the arithmetic exact. */
export const INTEGER_MAX = 2 ** 32 - 1;
/** Continuation bytes an integer may take: 5 carry 35 bits, enough for INTEGER_MAX even with a
 *  7-bit prefix; more could only be zero padding. */
export const INTEGER_CONTINUATION_BYTES_MAX = 5;
/** Huffman strings are decoded through a scratch buffer shared by every decoder (decoding is
 *  synchronous); longer strings get a buffer of their own, so no connection keeps a large one. */
const SCRATCH_BYTES = 16 * 1024;
/** Field slots kept between blocks; a block of more fields has its arrays cut back after it. */
const FIELD_SLOTS_KEPT_MAX = 64;
/** Literals of up to this many encoded octets have their strings remembered (LiteralCache), in
 *  this many slots (a power of two). A gRPC method path is some 20 octets Huffman-coded. */
const LITERAL_CACHE_BYTES_MAX = 64;
const LITERAL_CACHE_SLOTS = 16;

/** A malformed header block (RFC 7541 §3.1 "decoding error"): COMPRESSION_ERROR. */
export class HpackError extends Error {
  override name = 'HpackError';
}

/** RFC 7541 Appendix A: the static table, index 1..61, one entry per line as the RFC prints it:
 *  the name, then (after the first space) its value, if any. */
const STATIC_TABLE_TEXT = `
:authority
:method GET
:method POST
:path /
:path /index.html
:scheme http
:scheme https
:status 200
:status 204
:status 206
:status 304
:status 400
:status 404
:status 500
accept-charset
accept-encoding gzip, deflate
accept-language
accept-ranges
accept
access-control-allow-origin
age
allow
authorization
cache-control
content-disposition
content-encoding
content-language
content-length
content-location
content-range
content-type
cookie
date
etag
expect
expires
from
host
if-match
if-modified-since
if-none-match
if-range
if-unmodified-since
last-modified
link
location
max-forwards
proxy-authenticate
proxy-authorization
range
referer
refresh
retry-after
server
set-cookie
strict-transport-security
transfer-encoding
user-agent
vary
via
www-authenticate
`;
/** Index 0 is not used. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  ['', ''],
  ...STATIC_TABLE_TEXT.trim()
    .split('\n')
    .map((line): [string, string] => {
      const sp = line.indexOf(' ');
      return sp < 0 ? [line, ''] : [line.slice(0, sp), line.slice(sp + 1)];
    }),
];
/** Entries in the static table (the dynamic table's indexes start after them, §2.3.3). */
export const STATIC_ENTRIES = 61;
const STATIC_NAMES = STATIC_TABLE.map((e) => e[0]);
const STATIC_VALUES = STATIC_TABLE.map((e) => e[1]);
assert(STATIC_TABLE.length === STATIC_ENTRIES + 1, 'RFC 7541 Appendix A has 61 entries');

const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
const EMPTY = Buffer.alloc(0);

/** The decoding context of one connection's request header blocks (RFC 7541 §2.2). */
export class HpackDecoder {
  /** The last block's header fields kept: names[i], values[i] for i < count. Valid until the next
   *  decode (the arrays are reused). */
  readonly names: string[] = [];
  readonly values: string[] = [];
  count = 0;
  /** The last block's decoded header list size (octets, RFC 9113 §6.5.2), all fields counted. */
  listBytes = 0;
  /** The last block's header list went past listBytesMax: the fields from there on were not kept. */
  listTooLarge = false;

  // The dynamic table: a ring of the newest `entries` fields, newest at `newest`.
  // Invariant: tableBytes = Σ (name + value + 32) over the entries <= tableBytesMax <= settingsTableBytes.
  private readonly ringNames: string[];
  private readonly ringValues: string[];
  private newest = 0;
  private entries = 0;
  private tableBytes = 0;
  private tableBytesMax: number;
  private broken = false;
  private readonly literals = new LiteralCache();

  // The block being decoded.
  private src: Buffer = EMPTY;
  private pos = 0;
  private end = 0;

  /**
   * @param listBytesMax the largest header list kept (RFC 9113 SETTINGS_MAX_HEADER_LIST_SIZE).
   * @param settingsTableBytes the table size we advertise: the most a size update may ask for.
   */
  constructor(
    readonly listBytesMax: number,
    readonly settingsTableBytes = HEADER_TABLE_BYTES_DEFAULT,
  ) {
    assert(listBytesMax >= 0 && settingsTableBytes >= 0 && settingsTableBytes <= HEADER_TABLE_BYTES_MAX, 'HPACK limits in range');
    this.tableBytesMax = settingsTableBytes;
    // Each entry weighs at least ENTRY_OVERHEAD_BYTES, so this many fit at most.
    const slots = Math.max(1, Math.floor(settingsTableBytes / ENTRY_OVERHEAD_BYTES));
    // Left holey (filling 2 × 128 slots was a third of a new connection's first block): a slot is
    // read only once an entry was written to it.
    this.ringNames = new Array<string>(slots);
    this.ringValues = new Array<string>(slots);
  }

  /** Entries in the dynamic table, and their size in octets (RFC 7541 §4.1). */
  get tableEntries(): number {
    return this.entries;
  }

  get tableSizeBytes(): number {
    return this.tableBytes;
  }

  /** The dynamic table's maximum size as the encoder last set it (§4.2). */
  get tableSizeBytesMax(): number {
    return this.tableBytesMax;
  }

  /** Dynamic table entry `i` (1 = newest), as [name, value]. */
  tableEntry(i: number): [string, string] {
    assert(i >= 1 && i <= this.entries, 'dynamic table index in range');
    const at = this.slot(i);
    return [this.ringNames[at]!, this.ringValues[at]!];
  }

  /** Decodes one complete header block (HEADERS + CONTINUATION fragments joined) into names,
   *  values and count; throws HpackError for a malformed one, after which every call throws. */
  decode(block: Buffer): void {
    if (this.broken) throw new HpackError('HPACK context lost to an earlier decoding error');
    if (this.names.length > FIELD_SLOTS_KEPT_MAX) {
      this.names.length = 0;
      this.values.length = 0;
    }
    this.count = 0;
    this.listBytes = 0;
    this.listTooLarge = false;
    this.src = block;
    this.pos = 0;
    this.end = block.length;
    try {
      this.fields();
    } catch (err) {
      this.broken = true;
      throw err;
    } finally {
      this.src = EMPTY;
    }
  }

  private fields(): void {
    const src = this.src;
    // §4.2: a size update is allowed only before the block's first field.
    let fieldSeen = false;
    while (this.pos < this.end) {
      const b = src[this.pos]!;
      if (b >= 0x80) this.indexed();
      else if (b >= 0x40) this.literal(6, true); // 01xxxxxx: with incremental indexing
      else if (b >= 0x20) {
        if (fieldSeen) throw new HpackError('dynamic table size update after a header field');
        this.sizeUpdate();
        continue;
      } else this.literal(4, false); // 0000xxxx without indexing, 0001xxxx never indexed
      fieldSeen = true;
    }
  }

  /** §6.1: 1xxxxxxx, a field wholly from a table. */
  private indexed(): void {
    const index = this.integer(7);
    if (index === 0) throw new HpackError('indexed header field with index 0');
    if (index <= STATIC_ENTRIES) return this.keep(STATIC_NAMES[index]!, STATIC_VALUES[index]!);
    const at = this.dynamicSlot(index);
    this.keep(this.ringNames[at]!, this.ringValues[at]!);
  }

  /** §6.2: a literal value, its name indexed (prefix integer > 0) or a literal too. */
  private literal(prefixBits: number, indexing: boolean): void {
    const index = this.integer(prefixBits);
    let name: string;
    if (index === 0) name = this.string();
    else if (index <= STATIC_ENTRIES) name = STATIC_NAMES[index]!;
    else name = this.ringNames[this.dynamicSlot(index)]!;
    const value = this.string();
    if (indexing) this.insert(name, value);
    this.keep(name, value);
  }

  /** §6.3: 001xxxxx, the encoder's new maximum for the dynamic table. */
  private sizeUpdate(): void {
    const bytes = this.integer(5);
    if (bytes > this.settingsTableBytes) throw new HpackError(`dynamic table size update to ${bytes} above SETTINGS_HEADER_TABLE_SIZE ${this.settingsTableBytes}`);
    this.tableBytesMax = bytes;
    this.evictTo(bytes);
  }

  /** A field of the header list: counted always, kept while the list is within its bound. */
  private keep(name: string, value: string): void {
    this.listBytes += name.length + value.length + ENTRY_OVERHEAD_BYTES;
    if (this.listBytes > this.listBytesMax) {
      this.listTooLarge = true;
      return;
    }
    this.names[this.count] = name;
    this.values[this.count] = value;
    this.count++;
  }

  /** §4.4: the new entry first evicts the oldest ones until it fits; one larger than the whole
   *  table empties it and is not entered. */
  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD_BYTES;
    if (size > this.tableBytesMax) return this.evictTo(0);
    this.evictTo(this.tableBytesMax - size);
    assert(this.entries < this.ringNames.length, 'a dynamic table entry has a ring slot');
    this.newest = (this.newest + 1) % this.ringNames.length;
    this.ringNames[this.newest] = name;
    this.ringValues[this.newest] = value;
    this.entries++;
    this.tableBytes += size;
  }

  /** Evicts the oldest entries until the table takes at most `bytes`. */
  private evictTo(bytes: number): void {
    while (this.tableBytes > bytes) {
      assert(this.entries > 0, 'a non-empty dynamic table has entries');
      const at = this.slot(this.entries);
      this.tableBytes -= this.ringNames[at]!.length + this.ringValues[at]!.length + ENTRY_OVERHEAD_BYTES;
      this.ringNames[at] = '';
      this.ringValues[at] = '';
      this.entries--;
    }
    assert(this.tableBytes >= 0 && (this.entries > 0 || this.tableBytes === 0), 'dynamic table size matches its entries');
  }

  /** The ring slot of dynamic entry `i` (1 = newest). */
  private slot(i: number): number {
    const n = this.ringNames.length;
    return (this.newest - i + 1 + n) % n;
  }

  /** The ring slot of `index` in the whole index space, checked (§2.3.3: an index past both
   *  tables is a decoding error). */
  private dynamicSlot(index: number): number {
    const i = index - STATIC_ENTRIES;
    if (i > this.entries) throw new HpackError(`header index ${index} past the table (${STATIC_ENTRIES} static + ${this.entries} dynamic entries)`);
    return this.slot(i);
  }

  /** §5.1: an integer with an N-bit prefix, the rest in 7-bit groups, least significant first. */
  private integer(prefixBits: number): number {
    const src = this.src;
    const mask = (1 << prefixBits) - 1;
    let value = src[this.pos++]! & mask;
    if (value < mask) return value;
    for (let i = 0; ; i++) {
      if (i === INTEGER_CONTINUATION_BYTES_MAX) throw new HpackError(`integer of more than ${INTEGER_CONTINUATION_BYTES_MAX} continuation bytes`);
      if (this.pos >= this.end) throw new HpackError('integer truncated at the end of the block');
      const b = src[this.pos++]!;
      value += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) break;
    }
    if (value > INTEGER_MAX) throw new HpackError(`integer ${value} above ${INTEGER_MAX}`);
    return value;
  }

  /** §5.2: a string literal, Huffman-coded when its first bit is set. */
  private string(): string {
    if (this.pos >= this.end) throw new HpackError('string literal missing at the end of the block');
    const huffman = this.src[this.pos]! >= 0x80;
    const len = this.integer(7);
    if (len > this.end - this.pos) throw new HpackError(`string literal of ${len} octets past the end of the block`);
    const start = this.pos;
    this.pos += len;
    if (len === 0) return '';
    const cacheable = len <= LITERAL_CACHE_BYTES_MAX;
    if (cacheable) {
      const known = this.literals.find(this.src, start, len, huffman);
      if (known !== undefined) return known;
    }
    const s = huffman ? this.huffmanString(start, len) : this.src.toString('latin1', start, start + len);
    if (cacheable) this.literals.store(this.src, start, len, huffman, s);
    return s;
  }

  private huffmanString(start: number, len: number): string {
    const room = huffmanDecodedBytesMax(len);
    const out = room <= SCRATCH_BYTES ? scratch : Buffer.allocUnsafe(room);
    const n = huffmanDecode(this.src, start, start + len, out);
    if (n === HUFFMAN_EOS) throw new HpackError('EOS inside a Huffman-coded string');
    if (n === HUFFMAN_BAD_PADDING) throw new HpackError('Huffman padding longer than 7 bits or not all ones');
    return out.toString('latin1', 0, n);
  }
}

/**
 * The strings of recent short literals, by their encoded octets. Clients send some literals again
 * and again without indexing them (grpc-js sends :path so on every call), and making a string of
 * octets (a call into C++ and an allocation, plus Huffman decoding) is then most of what a warm
 * request's header block costs; comparing some 20 octets is a fraction of it. Direct-mapped, a
 * slot per hash of the length and three octets: a miss costs one comparison, and memory stays
 * LITERAL_CACHE_SLOTS × LITERAL_CACHE_BYTES_MAX octets per connection. A string found here was
 * decoded from the same octets before, so it was valid then and is now.
 */
class LiteralCache {
  private readonly keys = Buffer.allocUnsafe(LITERAL_CACHE_SLOTS * LITERAL_CACHE_BYTES_MAX);
  /** Per slot: the key's length × 2 + 1 if Huffman-coded, or -1 for an empty slot. */
  private readonly tags = new Int16Array(LITERAL_CACHE_SLOTS).fill(-1);
  private readonly strings = new Array<string>(LITERAL_CACHE_SLOTS).fill('');

  find(src: Buffer, start: number, len: number, huffman: boolean): string | undefined {
    const slot = slotOf(src, start, len);
    if (this.tags[slot] !== len * 2 + (huffman ? 1 : 0)) return undefined;
    const keys = this.keys;
    const base = slot * LITERAL_CACHE_BYTES_MAX;
    for (let i = 0; i < len; i++) if (keys[base + i] !== src[start + i]) return undefined;
    return this.strings[slot];
  }

  store(src: Buffer, start: number, len: number, huffman: boolean, s: string): void {
    assert(len > 0 && len <= LITERAL_CACHE_BYTES_MAX, 'a cached literal fits its slot');
    const slot = slotOf(src, start, len);
    // A loop, not Buffer#copy: for a few dozen octets its argument checks cost more than the copy.
    const keys = this.keys;
    const base = slot * LITERAL_CACHE_BYTES_MAX;
    for (let i = 0; i < len; i++) keys[base + i] = src[start + i]!;
    this.tags[slot] = len * 2 + (huffman ? 1 : 0);
    this.strings[slot] = s;
  }
}

function slotOf(src: Buffer, start: number, len: number): number {
  return (len + src[start]! * 3 + src[start + (len >> 1)]! * 5 + src[start + len - 1]! * 7) & (LITERAL_CACHE_SLOTS - 1);
}

/** Appends `value` as an HPACK integer with a `prefixBits` prefix after `firstByte`'s flags. */
function writeInteger(out: Buffer, at: number, value: number, prefixBits: number, firstByte: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[at] = firstByte | value;
    return at + 1;
  }
  out[at++] = firstByte | max;
  value -= max;
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[at] = value;
  return at + 1;
}

/** Octets an integer takes after its prefix byte (at most 5 for a string length below 2^32). */
const INTEGER_BYTES_MAX = 1 + INTEGER_CONTINUATION_BYTES_MAX;

/** One header block of literal fields without indexing (§6.2.2), new names, no Huffman coding:
 *  the client's dynamic table never changes, so no state is kept for our side. Names and values
 *  are written as latin1 (gRPC metadata is ASCII; binary values are base64). */
export function encodeHeaderBlock(fields: readonly (readonly [string, string])[]): Buffer {
  let room = 0;
  for (const [name, value] of fields) room += 1 + 2 * INTEGER_BYTES_MAX + name.length + value.length;
  const out = Buffer.allocUnsafe(room);
  let at = 0;
  for (const [name, value] of fields) {
    out[at++] = 0x00;
    at = writeInteger(out, at, name.length, 7, 0);
    at += out.write(name, at, 'latin1');
    at = writeInteger(out, at, value.length, 7, 0);
    at += out.write(value, at, 'latin1');
  }
  return out.subarray(0, at);
}
