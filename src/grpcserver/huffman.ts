// The Huffman code of HPACK (RFC 7541 §5.2 and Appendix B), both ways.
//
// The code is canonical: within one length, codes are consecutive in symbol order, and each
// length's codes follow the previous length's, shifted. So the table below holds only each
// symbol's code length (Appendix B's "len" column), and the codes are derived from it at load;
// the derivation is checked (Kraft's sum is exactly 1: the code is complete, so every bit string
// walks to a symbol) and test/grpcserver/hpack.test.ts compares codes with the RFC's column.
//
// Decoding runs a small automaton four bits at a time (as nghttp2 does; the table is built here,
// from the code): a state is an inner node of the code tree, i.e. the bits read since the last
// symbol; each (state, nibble) says the next state, the symbol completed on the way (at most one:
// no code is shorter than 5 bits) and whether EOS was reached. A byte costs two table reads and
// no allocation. At the end of the string the bits pending must be padding: fewer than 8, all ones
// (a prefix of EOS) — §5.2: "padding strictly longer than 7 bits" and "padding not corresponding
// to the most significant bits of the code for the EOS symbol" are decoding errors, and so is EOS
// itself inside a string.
import { assert } from '../util/assert';

/** Symbols: the 256 octets, and EOS (used only as padding). */
const EOS = 256;
const SYMBOLS = 257;

/** RFC 7541 Appendix B, code length in bits of each symbol 0..256, 16 a row. */
// prettier-ignore
const CODE_BITS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //   0..15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //  16..31
   6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, //  ' '..'/'
   5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, //  '0'..'?'
  13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, //  '@'..'O'
   7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, //  'P'..'_'
  15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, //  '`'..'o'
   6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, //  'p'..127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128..143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144..159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160..175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176..191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192..207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208..223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224..239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240..255
  30,                                                             // EOS
];

/** Each symbol's code, right-aligned in HUFFMAN_CODE_BITS[sym] bits. */
export const HUFFMAN_CODES = new Uint32Array(SYMBOLS);
export const HUFFMAN_CODE_BITS = Uint8Array.from(CODE_BITS);

/** Padding is at most this many bits (RFC 7541 §5.2). */
const PADDING_BITS_MAX = 7;
/** Decoder automaton entry: next state in bits 0..7, the symbol completed in bits 8..15. */
const T_EMIT = 1 << 16;
const T_FAIL = 1 << 17;
const STATES = 256;
const DECODE = new Uint32Array(STATES * 16);
/** States where the string may end: the root, or up to 7 one-bits into EOS's code. */
const ACCEPTING = new Uint8Array(STATES);

/** huffmanDecode's answers besides a length. */
export const HUFFMAN_BAD_PADDING = -1;
export const HUFFMAN_EOS = -2;

function buildCodes(): void {
  assert(CODE_BITS.length === SYMBOLS, 'one code length per symbol');
  const order = Array.from({ length: SYMBOLS }, (_, i) => i).sort((a, b) => CODE_BITS[a]! - CODE_BITS[b]! || a - b);
  let code = 0;
  let bits = CODE_BITS[order[0]!]!;
  // Kraft's sum in units of 2^-30 (the longest code): exactly 2^30 for a complete prefix code.
  let kraft = 0;
  for (const sym of order) {
    const len = CODE_BITS[sym]!;
    code *= 2 ** (len - bits);
    bits = len;
    assert(code < 2 ** len, `Huffman code of ${sym} fits its length`);
    HUFFMAN_CODES[sym] = code;
    kraft += 2 ** (30 - len);
    code++;
  }
  assert(kraft === 2 ** 30, 'the HPACK Huffman code is complete');
}

/** The code tree as child links: kids[2n + bit] is an inner node's number, or -(sym + 1). */
function buildTree(): Int32Array {
  const kids = new Int32Array(STATES * 2);
  let nodes = 1;
  for (let sym = 0; sym < SYMBOLS; sym++) {
    const len = HUFFMAN_CODE_BITS[sym]!;
    const code = HUFFMAN_CODES[sym]!;
    let node = 0;
    for (let i = len - 1; i > 0; i--) {
      const slot = 2 * node + ((code >>> i) & 1);
      if (kids[slot] === 0) kids[slot] = nodes++;
      node = kids[slot]!;
      assert(node > 0 && node < STATES, 'a Huffman code is no prefix of another');
    }
    const leaf = 2 * node + (code & 1);
    assert(kids[leaf] === 0, 'a Huffman code is no prefix of another');
    kids[leaf] = -(sym + 1);
  }
  // 257 leaves of a complete binary tree hang from exactly 256 inner nodes, each with two children.
  assert(nodes === STATES && kids.every((k) => k !== 0), 'the Huffman tree is full');
  return kids;
}

function buildDecoder(): void {
  const kids = buildTree();
  for (let state = 0; state < STATES; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const kid = kids[2 * node + ((nibble >>> i) & 1)]!;
        if (kid > 0) {
          node = kid;
          continue;
        }
        const sym = -kid - 1;
        if (sym === EOS) {
          entry |= T_FAIL;
          break;
        }
        entry |= T_EMIT | (sym << 8);
        node = 0;
      }
      DECODE[state * 16 + nibble] = entry | node;
    }
  }
  let node = 0;
  for (let depth = 0; depth <= PADDING_BITS_MAX; depth++) {
    ACCEPTING[node] = 1;
    node = kids[2 * node + 1]!;
    assert(node > 0, 'padding of up to 7 one-bits is a prefix of EOS');
  }
}

buildCodes();
buildDecoder();

/** Most octets a Huffman string of `encodedBytes` can decode to (the shortest code is 5 bits). */
export function huffmanDecodedBytesMax(encodedBytes: number): number {
  return Math.floor((encodedBytes * 8) / 5);
}

/** Decodes src[start, end) into `out` (room for huffmanDecodedBytesMax): the octets written, or
 *  HUFFMAN_BAD_PADDING / HUFFMAN_EOS for a string RFC 7541 §5.2 says is a decoding error. */
export function huffmanDecode(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let state = 0;
  let k = 0;
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    let t = DECODE[(state << 4) | (b >>> 4)]!;
    if (t & T_FAIL) return HUFFMAN_EOS;
    if (t & T_EMIT) out[k++] = t >>> 8;
    t = DECODE[((t & 0xff) << 4) | (b & 0x0f)]!;
    if (t & T_FAIL) return HUFFMAN_EOS;
    if (t & T_EMIT) out[k++] = t >>> 8;
    state = t & 0xff;
  }
  return ACCEPTING[state] ? k : HUFFMAN_BAD_PADDING;
}

/** Octets the Huffman coding of `src` takes (padding included). */
export function huffmanEncodedBytes(src: Uint8Array): number {
  let bits = 0;
  for (let i = 0; i < src.length; i++) bits += HUFFMAN_CODE_BITS[src[i]!]!;
  return Math.ceil(bits / 8);
}

/** The Huffman coding of `src`, padded with the most significant bits of EOS (ones). */
export function huffmanEncode(src: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(huffmanEncodedBytes(src));
  let o = 0;
  // Pending bits, right-aligned: fewer than 8 between symbols, at most 7 + 30 while one is added
  // (kept below 2^32 by adding a code in two parts).
  let acc = 0;
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const sym = src[i]!;
    let len = HUFFMAN_CODE_BITS[sym]!;
    const code = HUFFMAN_CODES[sym]!;
    while (len > 0) {
      const take = Math.min(len, 24);
      acc = acc * 2 ** take + ((code >>> (len - take)) & ((1 << take) - 1));
      n += take;
      len -= take;
      while (n >= 8) {
        n -= 8;
        out[o++] = Math.floor(acc / 2 ** n) & 0xff;
      }
      acc %= 2 ** n;
    }
  }
  if (n > 0) out[o++] = ((acc << (8 - n)) | ((1 << (8 - n)) - 1)) & 0xff;
  assert(o === out.length, 'Huffman output fills its computed length');
  return out;
}
