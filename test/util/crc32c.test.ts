// CRC32-C: both implementations (the native module for NATIVE_MIN_BYTES and more, the slice-by-16
// JavaScript below that and as the fallback) agree with the published check value, with the
// byte-at-a-time reference below, and compose incrementally.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import {
  crc32c,
  crc32cCombine,
  crc32cCombineOp,
  crc32cImplementation,
  crc32cJs,
  crc32cShiftOp,
  NATIVE_MIN_BYTES,
} from '../../src/util/crc32c';
import { Rng } from '../../src/util/rng';

/** The plain byte-at-a-time CRC32-C, kept here as the reference the fast one must agree with. */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32cBytewise(crc: number, data: Uint8Array): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

describe('crc32c', () => {
  it('matches the CRC-32C check values (RFC 3720 B.4, "123456789")', () => {
    assert.equal(crc32c(0, Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(0, Buffer.alloc(32)), 0x8a9136aa);
    assert.equal(crc32c(0, Buffer.alloc(32, 0xff)), 0x62a8ab43);
    assert.equal(crc32c(0, Buffer.alloc(0)), 0);
  });

  it('agrees with the byte-at-a-time table on random data of every length up to 300 and at every alignment', () => {
    const rng = new Rng(7);
    const buf = Buffer.alloc(512);
    for (let i = 0; i < buf.length; i++) buf[i] = rng.int(256);
    for (let start = 0; start < 9; start++) {
      for (let len = 0; len <= 300; len++) {
        assert.equal(crc32c(0, buf, start, start + len), crc32cBytewise(0, buf.subarray(start, start + len)), `start ${start} len ${len}`);
      }
    }
  });

  it('runs the native module where its prebuilt binary exists (linux x64 glibc: this repository\'s machines)', () => {
    const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
    if (process.platform === 'linux' && process.arch === 'x64' && glibc !== undefined) assert.equal(crc32cImplementation(), 'native');
  });

  it('agrees with the reference at lengths across the native threshold, at odd offsets, continuing a CRC', () => {
    const rng = new Rng(13);
    const buf = Buffer.alloc((1 << 20) + 4096);
    for (let i = 0; i < buf.length; i++) buf[i] = rng.int(256);
    const lengths = [0, 1, NATIVE_MIN_BYTES - 17, NATIVE_MIN_BYTES - 1, NATIVE_MIN_BYTES, NATIVE_MIN_BYTES + 1, NATIVE_MIN_BYTES + 15, 1000, 4096, 4097, 65_537, 1 << 20];
    for (const start of [0, 3, 4096 - 1]) {
      for (const len of lengths) {
        const bytes = buf.subarray(start, start + len);
        const want = crc32cBytewise(0, bytes);
        assert.equal(crc32c(0, buf, start, start + len), want, `start ${start} len ${len}`);
        assert.equal(crc32c(0, bytes), want, `whole view, len ${len}`);
        assert.equal(crc32cJs(0, buf, start, start + len), want, `js, start ${start} len ${len}`);
        // Continuing: a CRC from either implementation, carried on over a piece of the other side
        // of the threshold (crc32c's `crc` argument is a finished CRC, not a raw register).
        for (const cut of [1, NATIVE_MIN_BYTES - 1, NATIVE_MIN_BYTES, len >> 1]) {
          if (cut > len) continue;
          const head = crc32c(0, buf, start, start + cut);
          assert.equal(crc32c(head, buf, start + cut, start + len), want, `start ${start} len ${len} cut ${cut}`);
          assert.equal(crc32c(crc32cJs(0, buf, start, start + cut), buf, start + cut, start + len), want);
          assert.equal(crc32cJs(head, buf, start + cut, start + len), want);
        }
      }
    }
    // A Uint8Array that is not a Buffer, over part of a larger ArrayBuffer.
    const u8 = new Uint8Array(buf.buffer, buf.byteOffset + 5, 5000);
    assert.equal(crc32c(0, u8, 7, 4999), crc32cBytewise(0, u8.subarray(7, 4999)));
  });

  it('falls back to the JavaScript, with one warning line, when the native module does not load', () => {
    const modulePath = path.join(__dirname, '../../src/util/crc32c.js');
    const script = `
      const Module = require('node:module');
      const load = Module._load;
      Module._load = function (request, ...rest) {
        if (request === '@node-rs/crc32') throw new Error('no prebuilt binary for this platform (test)');
        return load.call(this, request, ...rest);
      };
      const m = require(${JSON.stringify(modulePath)});
      const buf = Buffer.alloc(5000);
      for (let i = 0; i < buf.length; i++) buf[i] = (i * 131 + 7) & 0xff;
      process.stdout.write(JSON.stringify({ impl: m.crc32cImplementation(), crc: m.crc32c(m.crc32c(0, buf, 0, 1000), buf, 1000, 5000) }));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { impl: string; crc: number };
    assert.equal(out.impl, 'js');
    const buf = Buffer.alloc(5000);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 131 + 7) & 0xff;
    assert.equal(out.crc, crc32cBytewise(0, buf));
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    const line = JSON.parse(lines[0]!) as { level: string; msg: string; reason: string };
    assert.equal(line.level, 'warn');
    assert.match(line.msg, /crc32c: the native @node-rs\/crc32 is not used/);
    assert.match(line.reason, /no prebuilt binary for this platform/);
  });

  it('is incremental: crc(a ++ b) === crc(crc(a), b)', () => {
    const data = Buffer.from('the quick brown fox jumps over the lazy dog, twice over');
    for (let cut = 0; cut <= data.length; cut++) {
      assert.equal(crc32c(crc32c(0, data, 0, cut), data, cut, data.length), crc32c(0, data));
    }
  });

  it('combines: crc(a ++ b) from crc(a), crc(b) and |b|, for random pieces of 0 to 5,000 bytes', () => {
    const rng = new Rng(11);
    const buf = Buffer.alloc(10_000);
    for (let i = 0; i < buf.length; i++) buf[i] = rng.int(256);
    for (let round = 0; round < 300; round++) {
      const lenA = round < 4 ? round : rng.int(5001);
      const lenB = round < 4 ? 3 - round : rng.int(5001);
      const a = buf.subarray(0, lenA);
      const b = buf.subarray(lenA, lenA + lenB);
      const whole = crc32c(0, buf, 0, lenA + lenB);
      assert.equal(crc32cCombine(crc32c(0, a), crc32c(0, b), lenB), whole, `|a| ${lenA} |b| ${lenB}`);
      assert.equal(crc32cCombineOp(crc32c(0, a), crc32c(0, b), crc32cShiftOp(lenB)), whole);
    }
  });

  it('combines over lengths far beyond a buffer: the shift by m + n is the shift by m then by n', () => {
    // x^(8(m+n)) = x^(8m) · x^(8n): with 0 as the second CRC, combine is the shift alone.
    const crc = crc32c(0, Buffer.from('quorumkv'));
    for (const [m, n] of [[2 ** 32, 5], [2 ** 40 + 3, 2 ** 33 + 1], [Number.MAX_SAFE_INTEGER - 10, 10]]) {
      assert.equal(crc32cCombine(crc32cCombine(crc, 0, m!), 0, n!), crc32cCombine(crc, 0, m! + n!));
    }
  });
});
