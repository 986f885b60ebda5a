// Our HPACK decoder (src/grpcserver/hpack.ts) and Huffman code (huffman.ts), held to RFC 7541:
// Appendix C's examples byte for byte (fields and dynamic table after each block), every decoding
// error the RFC names, the header-list bound against a decompression bomb, and blocks written by
// nghttp2 (node:http2's client) over many requests on one connection.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { H2ServerConnection, type H2ServerStream } from '../../src/grpcserver/h2_conn';
import { HpackDecoder, HpackError, encodeHeaderBlock } from '../../src/grpcserver/hpack';
import { HUFFMAN_BAD_PADDING, HUFFMAN_CODES, HUFFMAN_CODE_BITS, HUFFMAN_EOS, huffmanDecode, huffmanDecodedBytesMax, huffmanEncode } from '../../src/grpcserver/huffman';
import { Rng } from '../../src/util/rng';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function fieldsOf(d: HpackDecoder): [string, string][] {
  return Array.from({ length: d.count }, (_, i) => [d.names[i]!, d.values[i]!]);
}

function tableOf(d: HpackDecoder): [string, string][] {
  return Array.from({ length: d.tableEntries }, (_, i) => d.tableEntry(i + 1));
}

/** Decodes `block` and checks the fields and then the dynamic table (newest first) and its size. */
function step(d: HpackDecoder, block: string, fields: [string, string][], table: [string, string][], tableBytes: number): void {
  d.decode(hex(block));
  assert.deepEqual(fieldsOf(d), fields);
  assert.deepEqual(tableOf(d), table);
  assert.equal(d.tableSizeBytes, tableBytes);
  assert.equal(d.listTooLarge, false);
}

function huffmanString(s: Buffer): Buffer {
  const out = Buffer.alloc(huffmanDecodedBytesMax(s.length));
  const n = huffmanDecode(s, 0, s.length, out);
  assert.ok(n >= 0, `Huffman decode failed (${n})`);
  return out.subarray(0, n);
}

function decodeError(block: Buffer, re: RegExp, d = new HpackDecoder(64 * 1024)): void {
  assert.throws(() => d.decode(block), (err: unknown) => err instanceof HpackError && re.test(err.message));
}

describe('HPACK Huffman code (RFC 7541 Appendix B)', () => {
  it('derives the RFC codes from the code lengths, for every length in the table', () => {
    // [symbol, code as printed in the RFC's hex column, length]: at least one of each length.
    const rfc: [number, number, number][] = [
      [48, 0x0, 5], [97, 0x3, 5], [116, 0x9, 5], [32, 0x14, 6], [95, 0x22, 6], [58, 0x5c, 7], [122, 0x7b, 7],
      [38, 0xf8, 8], [90, 0xfd, 8], [33, 0x3f8, 10], [63, 0x3fc, 10], [39, 0x7fa, 11], [124, 0x7fc, 11],
      [35, 0xffa, 12], [62, 0xffb, 12], [0, 0x1ff8, 13], [126, 0x1ffd, 13], [94, 0x3ffc, 14], [125, 0x3ffd, 14],
      [60, 0x7ffc, 15], [123, 0x7ffe, 15], [92, 0x7fff0, 19], [208, 0x7fff2, 19], [128, 0xfffe6, 20],
      [226, 0xfffed, 20], [153, 0x1fffdc, 21], [230, 0x1fffe8, 21], [129, 0x3fffd2, 22], [233, 0x3fffeb, 22],
      [1, 0x7fffd8, 23], [239, 0x7ffff4, 23], [9, 0xffffea, 24], [237, 0xfffff5, 24], [199, 0x1ffffec, 25],
      [235, 0x1ffffef, 25], [192, 0x3ffffe0, 26], [255, 0x3ffffee, 26], [203, 0x7ffffde, 27],
      [254, 0x7fffff0, 27], [2, 0xfffffe2, 28], [249, 0xffffffe, 28], [10, 0x3ffffffc, 30],
      [22, 0x3ffffffe, 30], [256, 0x3fffffff, 30],
    ];
    for (const [sym, code, bits] of rfc) {
      assert.equal(HUFFMAN_CODE_BITS[sym], bits, `length of ${sym}`);
      assert.equal(HUFFMAN_CODES[sym], code, `code of ${sym}`);
    }
  });

  it('round-trips every octet alone, all 256 in a row, and random strings', () => {
    for (let b = 0; b < 256; b++) assert.deepEqual(huffmanString(huffmanEncode(Buffer.from([b]))), Buffer.from([b]), `octet ${b}`);
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    assert.deepEqual(huffmanString(huffmanEncode(all)), all);
    assert.deepEqual(huffmanString(huffmanEncode(Buffer.from(all).reverse())), Buffer.from(all).reverse());
    const rng = new Rng(7541);
    for (let n = 0; n < 300; n++) {
      const s = Buffer.from(Array.from({ length: rng.int(201) }, () => rng.int(256)));
      assert.deepEqual(huffmanString(huffmanEncode(s)), s);
    }
  });

  it('accepts padding of up to 7 one-bits only, and refuses EOS inside a string', () => {
    // 'a' is 00011: with 111 padding one octet; with 000 padding the bits are no EOS prefix.
    assert.deepEqual(huffmanString(Buffer.from([0x1f])), Buffer.from('a'));
    const out = Buffer.alloc(16);
    assert.equal(huffmanDecode(Buffer.from([0x18]), 0, 1, out), HUFFMAN_BAD_PADDING);
    // 'a' then a whole octet of ones: 11 bits of padding.
    assert.equal(huffmanDecode(Buffer.from([0x1f, 0xff]), 0, 2, out), HUFFMAN_BAD_PADDING);
    // A lone octet of ones: 8 bits of padding.
    assert.equal(huffmanDecode(Buffer.from([0xff]), 0, 1, out), HUFFMAN_BAD_PADDING);
    // '0' (5 bits) + 3 ones; '0' '0' + 6 ones; '0' x3 + 1 one: all fine.
    assert.deepEqual(huffmanString(Buffer.from([0x07])), Buffer.from('0'));
    assert.deepEqual(huffmanString(Buffer.from([0x00, 0x3f])), Buffer.from('00'));
    assert.deepEqual(huffmanString(Buffer.from([0x00, 0x01])), Buffer.from('000'));
    // EOS (30 ones) whole, alone or after a symbol.
    assert.equal(huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, out), HUFFMAN_EOS);
    assert.equal(huffmanDecode(Buffer.from([0x07, 0xff, 0xff, 0xff, 0xfe]), 0, 5, out), HUFFMAN_EOS);
    // The empty string is empty.
    assert.equal(huffmanDecode(Buffer.alloc(0), 0, 0, out), 0);
  });
});

describe('HpackDecoder (RFC 7541)', () => {
  it('C.2: literal with indexing, without indexing, never indexed; indexed', () => {
    step(new HpackDecoder(4096), '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572', [['custom-key', 'custom-header']], [['custom-key', 'custom-header']], 55);
    step(new HpackDecoder(4096), '040c 2f73 616d 706c 652f 7061 7468', [[':path', '/sample/path']], [], 0);
    step(new HpackDecoder(4096), '1008 7061 7373 776f 7264 0673 6563 7265 74', [['password', 'secret']], [], 0);
    step(new HpackDecoder(4096), '82', [[':method', 'GET']], [], 0);
  });

  const requests = (blocks: [string, string, string]): void => {
    const d = new HpackDecoder(4096);
    const authority: [string, string] = [':authority', 'www.example.com'];
    const cacheControl: [string, string] = ['cache-control', 'no-cache'];
    const custom: [string, string] = ['custom-key', 'custom-value'];
    step(d, blocks[0], [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], authority], [authority], 57);
    step(d, blocks[1], [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], authority, cacheControl], [cacheControl, authority], 110);
    step(d, blocks[2], [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], authority, custom], [custom, cacheControl, authority], 164);
  };

  it('C.3: three requests on one connection, without Huffman coding', () => {
    requests([
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ]);
  });

  it('C.4: the same requests with Huffman coding', () => {
    requests([
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ]);
  });

  const responses = (blocks: [string, string, string]): void => {
    // SETTINGS_HEADER_TABLE_SIZE of 256: entries are evicted.
    const d = new HpackDecoder(4096, 256);
    const date1: [string, string] = ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'];
    const date2: [string, string] = ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'];
    const location: [string, string] = ['location', 'https://www.example.com'];
    const privateCc: [string, string] = ['cache-control', 'private'];
    const cookie: [string, string] = ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'];
    const gzip: [string, string] = ['content-encoding', 'gzip'];
    step(d, blocks[0], [[':status', '302'], privateCc, date1, location], [location, date1, privateCc, [':status', '302']], 222);
    step(d, blocks[1], [[':status', '307'], privateCc, date1, location], [[':status', '307'], location, date1, privateCc], 222);
    step(d, blocks[2], [[':status', '200'], privateCc, date2, location, gzip, cookie], [cookie, gzip, date2], 215);
  };

  it('C.5: three responses with evictions, without Huffman coding', () => {
    responses([
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e
       1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
      '4803 3330 37c1 c0bf',
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d
       4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572
       7369 6f6e 3d31`,
    ]);
  });

  it('C.6: the same responses with Huffman coding', () => {
    responses([
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b
       97c8 e9ae 82ae 43d3`,
      '4883 640e ffc1 c0bf',
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf
       cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    ]);
  });

  it('names from the dynamic table, and the never-indexed / without-indexing forms leave it alone', () => {
    const d = new HpackDecoder(4096);
    step(d, '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572', [['custom-key', 'custom-header']], [['custom-key', 'custom-header']], 55);
    // 0000 1111 0011 1111 (index 62 with a 4-bit prefix: 15 + 47), value "v"; then 0001 never indexed.
    step(d, '0f2f 0176 1f2f 0177', [['custom-key', 'v'], ['custom-key', 'w']], [['custom-key', 'custom-header']], 55);
    // With incremental indexing and a dynamic name: the new entry is 1, the old one 2.
    step(d, '7e01 78be bf', [['custom-key', 'x'], ['custom-key', 'x'], ['custom-key', 'custom-header']], [['custom-key', 'x'], ['custom-key', 'custom-header']], 98);
  });

  it('table size updates: only at the start of a block, never above our SETTINGS_HEADER_TABLE_SIZE', () => {
    const d = new HpackDecoder(4096);
    step(d, '4001 6101 62 4001 6301 64', [['a', 'b'], ['c', 'd']], [['c', 'd'], ['a', 'b']], 68);
    // To 34 octets: only the newest entry stays; then two updates in a row (0 then 4096) empty it.
    step(d, '3f03 be', [['c', 'd']], [['c', 'd']], 34);
    assert.equal(d.tableSizeBytesMax, 34);
    step(d, '20 3fe1 1f 82', [[':method', 'GET']], [], 0);
    assert.equal(d.tableSizeBytesMax, 4096);
    decodeError(hex('3fe2 1f'), /above SETTINGS_HEADER_TABLE_SIZE 4096/);
    decodeError(hex('82 20'), /size update after a header field/);
    // 4097 with a smaller SETTINGS: refused as well.
    decodeError(hex('3fe2 01'), /above SETTINGS_HEADER_TABLE_SIZE 256/, new HpackDecoder(4096, 256));
  });

  it('an entry larger than the table empties it and is not entered (§4.4)', () => {
    const d = new HpackDecoder(64 * 1024, 100);
    step(d, '4001 6101 62', [['a', 'b']], [['a', 'b']], 34);
    const big = 'x'.repeat(80);
    d.decode(Buffer.concat([hex('4001 79'), Buffer.from([80]), Buffer.from(big)]));
    assert.deepEqual(fieldsOf(d), [['y', big]]);
    assert.equal(d.tableEntries, 0);
    assert.equal(d.tableSizeBytes, 0);
  });

  it('refuses every malformed block, and every block after one', () => {
    const cases: [string, Buffer, RegExp][] = [
      ['index 0', hex('80'), /index 0/],
      ['an index past the static table with an empty dynamic one', hex('be'), /index 62 past the table/],
      ['a name index past the table', hex('7f00 0161'), /index 63 past the table/],
      ['an integer truncated', hex('ff'), /integer truncated/],
      ['an integer truncated in its continuation', hex('ff 80 80'), /integer truncated/],
      ['an integer above 2^32 - 1', hex('ff ff ff ff ff 7f'), /above 4294967295/],
      ['an integer of 6 continuation bytes', hex('ff 80 80 80 80 80 00'), /more than 5 continuation bytes/],
      ['a string past the end', hex('4005 6162'), /past the end of the block/],
      ['a string length truncated', hex('407f'), /integer truncated/],
      ['a string missing', hex('40'), /string literal missing/],
      ['a value missing', hex('4001 61'), /string literal missing/],
      ['Huffman padding of zeros', hex('4001 61 81 18'), /Huffman padding/],
      ['Huffman padding of 8 ones', hex('4001 61 82 1fff'), /Huffman padding/],
      ['EOS inside a Huffman string', hex('4001 61 84 ffffffff'), /EOS inside/],
      ['a table size update after a field', hex('82 3f e1 1f'), /after a header field/],
      ['a table size update above 4096', hex('3f e2 1f'), /above SETTINGS_HEADER_TABLE_SIZE/],
    ];
    for (const [what, block, re] of cases) {
      const d = new HpackDecoder(64 * 1024);
      assert.throws(() => d.decode(block), (err: unknown) => err instanceof HpackError && re.test(err.message), what);
      // The context is lost with the block (RFC 9113 §4.3): the next one is refused too.
      assert.throws(() => d.decode(hex('82')), HpackError, `${what}: decoder refuses afterwards`);
    }
  });

  it('integers: 5 continuation bytes at most, values up to 2^32 - 1', () => {
    // A size update to 31 written with 5 continuation bytes (4 of them needless zero groups).
    const d = new HpackDecoder(64 * 1024);
    d.decode(hex('3f 80 80 80 80 00 82'));
    assert.equal(d.tableSizeBytesMax, 31);
    assert.deepEqual(fieldsOf(d), [[':method', 'GET']]);
    // 2^32 - 1 decodes (and is then refused as a table size); 2^32 is refused as an integer.
    decodeError(Buffer.from(integerBytes(2 ** 32 - 1, 5, 0x20)), /size update to 4294967295 above/);
    decodeError(Buffer.from(integerBytes(2 ** 32, 5, 0x20)), /integer 4294967296 above 4294967295/);
  });

  it('bounds the header list while decoding: a 500-byte block of references to a 4 KB entry', () => {
    const listBytesMax = 16 * 1024;
    const d = new HpackDecoder(listBytesMax);
    // A 4,000-octet value entered into the table (Huffman-coded '0's: 5 bits each, 2,500 octets).
    const value = Buffer.alloc(4000, '0');
    const coded = huffmanEncode(value);
    d.decode(Buffer.concat([hex('4001 78'), Buffer.from(integerBytes(coded.length, 7, 0x80)), coded]));
    assert.equal(d.tableEntries, 1);
    // 500 one-octet references would decode to 2 MB of header list.
    const bomb = Buffer.concat([hex('8386 84'), Buffer.alloc(500, 0xbe), hex('4001 7901 7a')]);
    const t0 = process.hrtime.bigint();
    d.decode(bomb);
    const us = Number(process.hrtime.bigint() - t0) / 1000;
    assert.equal(d.listTooLarge, true);
    // Kept: the three pseudo-headers and as many references as fit 16 KiB; counted: all of it.
    const pseudoBytes = 43 + 43 + 38; // :method POST, :scheme http, :path /
    assert.equal(d.count, 3 + Math.floor((listBytesMax - pseudoBytes) / 4033));
    assert.equal(d.listBytes, pseudoBytes + 500 * 4033 + 34);
    assert.ok(us < 20_000, `bomb decoded in ${us} µs`);
    // The block was decoded to its end: the literal after the references entered the table, so
    // the context is still the client's, and the next block decodes in full.
    assert.deepEqual(d.tableEntry(1), ['y', 'z']);
    d.decode(hex('82 be bf'));
    assert.equal(d.listTooLarge, false);
    assert.deepEqual(fieldsOf(d), [[':method', 'GET'], ['y', 'z'], ['x', value.toString('latin1')]]);
  });

  it('encodeHeaderBlock writes literals without indexing that decode back, and leave the table alone', () => {
    const fields: [string, string][] = [[':status', '200'], ['content-type', 'application/grpc'], ['x-long', 'v'.repeat(300)], ['grpc-message', '']];
    const d = new HpackDecoder(64 * 1024);
    d.decode(encodeHeaderBlock(fields));
    assert.deepEqual(fieldsOf(d), fields);
    assert.equal(d.tableEntries, 0);
  });
});

/** An HPACK integer (RFC 7541 §5.1), for writing test blocks by hand. */
function integerBytes(value: number, prefixBits: number, flags: number): number[] {
  const max = 2 ** prefixBits - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

describe('HpackDecoder against nghttp2 (node:http2 client) on one connection', () => {
  let tcp: net.Server;
  let port: number;
  const conns: H2ServerConnection[] = [];

  before(async () => {
    const answer = (s: H2ServerStream): void => {
      seen.push(s.headers);
      s.onEnd = () => {
        s.respond(encodeHeaderBlock([[':status', '200']]), true);
      };
    };
    tcp = net.createServer((sock) => {
      sock.on('data', (b: Buffer) => (receivedBytes += b.length));
      conns.push(new H2ServerConnection(sock, answer, { maxHeaderListBytes: 64 * 1024 }));
    });
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    port = (tcp.address() as net.AddressInfo).port;
  });

  after(async () => {
    for (const c of conns.splice(0)) c.destroy();
    await new Promise((r) => tcp.close(r));
  });

  const seen: http2.IncomingHttpHeaders[] = [];
  let receivedBytes = 0;

  it('decodes 400 requests whose headers repeat, vary and overflow the dynamic table', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    const rng = new Rng(9113);
    const printable = (n: number): string => Array.from({ length: n }, () => String.fromCharCode(rng.range(0x20, 0x7e))).join('');
    const sent: Record<string, string | string[]>[] = [];
    try {
      for (let i = 0; i < 400; i++) {
        // A gRPC-like request: fixed fields that nghttp2 indexes once and refers to after, a
        // token that changes now and then, and large random values that push entries out.
        const h: Record<string, string | string[]> = {
          ':method': 'POST',
          ':path': `/etcdserverpb.KV/${rng.pick(['Range', 'Put', 'Txn', 'DeleteRange'])}`,
          'content-type': 'application/grpc',
          te: 'trailers',
          'user-agent': 'grpc-node-js/1.14.7',
          'grpc-accept-encoding': 'identity,deflate,gzip',
          token: `token-${Math.floor(i / 50)}`,
        };
        if (rng.chance(0.3)) h[`x-big-${rng.int(5)}`] = printable(rng.range(500, 2500));
        if (rng.chance(0.2)) h['x-multi'] = [printable(5), printable(9)];
        if (rng.chance(0.1)) h['x-bin-bin'] = Buffer.from(printable(30)).toString('base64');
        sent.push(h);
        await new Promise<void>((resolve, reject) => {
          const req = session.request(h, { endStream: true });
          req.on('response', () => undefined);
          req.on('error', reject);
          req.on('close', () => resolve());
          req.resume();
        });
      }
    } finally {
      session.destroy();
    }
    assert.equal(seen.length, sent.length);
    // The client referred to its dynamic table (and ours followed): besides the random values,
    // which cannot be compressed, the connection carried a fraction of the header lists' size.
    let listBytes = 0;
    let randomBytes = 0;
    for (const h of seen) {
      for (const [name, v] of Object.entries(h)) {
        for (const one of Array.isArray(v) ? v : [v ?? '']) {
          listBytes += name.length + one.length + 32;
          if (name.startsWith('x-')) randomBytes += one.length;
        }
      }
    }
    assert.ok((receivedBytes - randomBytes) * 5 < listBytes - randomBytes, `${receivedBytes} bytes received for ${listBytes} bytes of header lists (${randomBytes} random)`);
    for (let i = 0; i < sent.length; i++) {
      const got = seen[i]!;
      for (const [name, value] of Object.entries(sent[i]!)) assert.deepEqual(got[name], value, `request ${i}: ${name}`);
      assert.equal(got[':scheme'], 'http');
      assert.equal(got[':authority'], `127.0.0.1:${port}`);
    }
  });
});
