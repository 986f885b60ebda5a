// CRC32-C: the slice-by-8 implementation agrees with the published check value, with the
// byte-at-a-time reference below, and composes incrementally.
import assert from 'node:assert/strict';
import { crc32c } from '../../src/util/crc32c';
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
});
