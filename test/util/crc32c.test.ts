// CRC32-C: the slice-by-8 implementation agrees with the published check value, with the
// byte-at-a-time reference below, and composes incrementally.
import assert from 'node:assert/strict';
import { crc32c, crc32cCombine, crc32cCombineOp, crc32cShiftOp } from '../../src/util/crc32c';
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
