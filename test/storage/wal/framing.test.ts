// Record framing: what the encoder writes, the decoder reads back exactly; every single-bit flip and
// every truncation of a batch is detected; segment names round-trip.
import assert from 'node:assert/strict';
import { EntryType } from '../../../src/raft/types';
import { checkBatch, readEntry, readHardState, recordEnd, recordType } from '../../../src/storage/wal/decoder';
import { encodeSaveBatch, encodeStartBatch, saveBatchBytes } from '../../../src/storage/wal/encoder';
import { BATCH_HEADER_BYTES, RecordType, parseSegmentName, segmentName } from '../../../src/storage/wal/format';
import { ent, ents, hs } from './helpers';

describe('wal framing', () => {
  it('a save batch decodes to the same entries and hard state (uint64 vote, 2^53-1 index, conf change)', () => {
    const es = [ent(1, 1, 0), ent(2, 1, 300), ent(Number.MAX_SAFE_INTEGER, 2 ** 40, 5, EntryType.ConfChange)];
    const h = hs(2 ** 40, 77, 0xffffffffffffffffn);
    const buf = encodeSaveBatch(42, h, es);
    assert.equal(buf.length, saveBatchBytes(h, es));
    const r = checkBatch(buf, 0);
    assert.ok(r.kind === 'ok');
    assert.equal(r.seq, 42);
    assert.equal(r.records, 4);
    assert.equal(r.end, buf.length);
    const got = [];
    for (let o = r.bodyStart; o < r.end; o = recordEnd(buf, o)) {
      if (recordType(buf, o) === RecordType.Entry) got.push(readEntry(buf, o));
      else assert.deepEqual(readHardState(buf, o), h);
    }
    assert.deepEqual(got.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString('hex')]), es.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString('hex')]));
  });

  it('every single-bit flip anywhere in a batch makes it fail verification', () => {
    const buf = encodeSaveBatch(3, hs(1, 1), ents(1, 3, 1, 10));
    for (let o = 0; o < buf.length; o++) {
      for (let bit = 0; bit < 8; bit++) {
        const copy = Buffer.from(buf);
        copy[o] ^= 1 << bit;
        const r = checkBatch(copy, 0);
        assert.equal(r.kind, 'bad', `flip at byte ${o} bit ${bit} went unnoticed`);
      }
    }
  });

  it('every truncation of a batch fails verification (or reads as the end, at length 0)', () => {
    const buf = encodeSaveBatch(3, hs(1, 1), ents(1, 3, 1, 10));
    assert.equal(checkBatch(buf.subarray(0, 0), 0).kind, 'end');
    for (let len = 1; len < buf.length; len++) {
      assert.equal(checkBatch(Buffer.from(buf.subarray(0, len)), 0).kind, 'bad', `cut at ${len}`);
      const zeroed = Buffer.from(buf);
      zeroed.fill(0, len);
      // Zeroing bytes that already are zero (the high bytes of a small u64) changes nothing.
      if (!zeroed.equals(buf)) assert.equal(checkBatch(zeroed, 0).kind, 'bad', `zeroed from ${len}`);
    }
  });

  it('a start batch begins with metadata, and zeros after a batch read as the end of the log', () => {
    const start = encodeStartBatch(0, Buffer.from('meta'), hs(0, 0, 0n), { index: 5, term: 2 });
    const file = Buffer.concat([start, Buffer.alloc(100)]);
    const r = checkBatch(file, 0);
    assert.ok(r.kind === 'ok');
    assert.equal(r.records, 3);
    assert.equal(recordType(file, BATCH_HEADER_BYTES), RecordType.Metadata);
    assert.deepEqual(checkBatch(file, r.end), { kind: 'end' });
  });

  it('segment names are %016x-%016x.wal and parse back; anything else is not a segment name', () => {
    assert.equal(segmentName(1, 0x1f), '0000000000000001-000000000000001f.wal');
    assert.deepEqual(parseSegmentName('00000000000000ff-0000000000010000.wal'), { seq: 255, firstIndex: 65536 });
    for (const bad of ['1-1.wal', '0000000000000001-000000000000001F.wal', '0000000000000001-0000000000000000.wal', 'x.wal', '0000000000000001-000000000000001f.wal.tmp']) {
      assert.equal(parseSegmentName(bad), undefined, bad);
    }
  });
});
