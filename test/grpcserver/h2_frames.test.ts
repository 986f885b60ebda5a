// The receiving side's framing shared by our HTTP/2 server connection and the peer stream's client
// (src/grpcserver/h2_frames.ts FrameReader): frames come out whole and in order however the bytes
// are cut into chunks, a preface is checked before the first frame, and a frame above the bound or
// a wrong preface is a connection error with the matching HTTP/2 code.
import assert from 'node:assert/strict';
import {
  FRAME_HEADER_BYTES,
  FrameReader,
  H2ConnectionError,
  H2_FRAME_SIZE_ERROR,
  H2_PREFACE,
  H2_PROTOCOL_ERROR,
  T_DATA,
  T_HEADERS,
  T_PING,
  frame,
} from '../../src/grpcserver/h2_frames';
import { Rng } from '../../src/util/rng';

interface Seen {
  type: number;
  flags: number;
  streamId: number;
  payload: string;
}

function reader(maxFrame: number, preface: Buffer | undefined, seen: Seen[], reading: () => boolean = () => true): FrameReader {
  return new FrameReader(maxFrame, preface, (type, flags, streamId, payload) => seen.push({ type, flags, streamId, payload: payload.toString('hex') }), reading);
}

/** Frames of every size class: empty, small, exactly the bound; a reserved bit set on one id. */
function sampleFrames(maxFrame: number): { wire: Buffer; want: Seen[] } {
  const frames: [number, number, number, Buffer][] = [
    [T_HEADERS, 0x4, 1, Buffer.from('abc')],
    [T_DATA, 0, 1, Buffer.alloc(0)],
    [T_DATA, 0x1, 3, Buffer.alloc(maxFrame, 7)],
    [T_PING, 0, 0, Buffer.from('12345678')],
    [T_DATA, 0, 0x7fffffff, Buffer.from([1, 2, 3, 4, 5])],
  ];
  const parts = frames.map(([t, f, s, p]) => frame(t, f, s, p));
  // The reserved bit of the stream id is ignored on receipt (RFC 9113 §4.1).
  parts[1]![5]! |= 0x80;
  return {
    wire: Buffer.concat(parts),
    want: frames.map(([type, flags, streamId, p]) => ({ type, flags, streamId, payload: p.toString('hex') })),
  };
}

describe('grpcserver/h2_frames FrameReader', () => {
  it('gives every frame whole and in order, whatever the chunk boundaries (every single cut, and random cuts)', () => {
    const maxFrame = 300;
    const { wire, want } = sampleFrames(maxFrame);
    for (let cut = 0; cut <= wire.length; cut++) {
      const seen: Seen[] = [];
      const r = reader(maxFrame, undefined, seen);
      r.read(wire.subarray(0, cut));
      r.read(wire.subarray(cut));
      assert.deepEqual(seen, want, `cut at ${cut}`);
    }
    const rng = new Rng(11);
    for (let round = 0; round < 200; round++) {
      const seen: Seen[] = [];
      const r = reader(maxFrame, undefined, seen);
      for (let off = 0; off < wire.length; ) {
        const n = Math.max(1, Math.min(wire.length - off, rng.range(1, 40)));
        r.read(wire.subarray(off, off + n));
        off += n;
      }
      assert.deepEqual(seen, want, `round ${round}`);
    }
  });

  it('with a preface: frames only after the whole preface, which may arrive a byte at a time', () => {
    const { wire, want } = sampleFrames(100);
    const all = Buffer.concat([H2_PREFACE, wire]);
    const seen: Seen[] = [];
    const r = reader(100, H2_PREFACE, seen);
    for (let i = 0; i < all.length; i++) {
      r.read(all.subarray(i, i + 1));
      if (i < H2_PREFACE.length) assert.equal(seen.length, 0);
    }
    assert.deepEqual(seen, want);
  });

  it('a wrong preface is a PROTOCOL_ERROR as soon as a byte differs', () => {
    const r = reader(100, H2_PREFACE, []);
    r.read(H2_PREFACE.subarray(0, 5));
    const bad = Buffer.from(H2_PREFACE.subarray(5, 10));
    bad[2] ^= 1;
    assert.throws(
      () => r.read(bad),
      (e: unknown) => e instanceof H2ConnectionError && e.h2code === H2_PROTOCOL_ERROR && /preface/.test(e.message),
    );
  });

  it('a frame above the bound is a FRAME_SIZE_ERROR from its header alone (its payload never buffered)', () => {
    const seen: Seen[] = [];
    const r = reader(100, undefined, seen);
    r.read(frame(T_DATA, 0, 1, Buffer.alloc(100)));
    assert.equal(seen.length, 1);
    const header = frame(T_DATA, 0, 1, Buffer.alloc(101)).subarray(0, FRAME_HEADER_BYTES);
    assert.throws(
      () => r.read(header),
      (e: unknown) => e instanceof H2ConnectionError && e.h2code === H2_FRAME_SIZE_ERROR && /101 bytes/.test(e.message),
    );
  });

  it('a frame of the largest size sent a byte at a time comes out whole; an oversize length split inside the header is refused once the header is complete', () => {
    const maxFrame = 16384;
    const payload = Buffer.alloc(maxFrame);
    for (let i = 0; i < maxFrame; i++) payload[i] = i & 0xff;
    const wire = Buffer.concat([frame(T_DATA, 0, 5, payload), frame(T_PING, 0, 0, Buffer.from('abcdefgh'))]);
    const seen: Seen[] = [];
    const r = reader(maxFrame, undefined, seen);
    for (let i = 0; i < wire.length; i++) r.read(wire.subarray(i, i + 1));
    assert.deepEqual(seen, [
      { type: T_DATA, flags: 0, streamId: 5, payload: payload.toString('hex') },
      { type: T_PING, flags: 0, streamId: 0, payload: Buffer.from('abcdefgh').toString('hex') },
    ]);
    const header = frame(T_DATA, 0, 1, Buffer.alloc(maxFrame + 1)).subarray(0, FRAME_HEADER_BYTES);
    const r2 = reader(maxFrame, undefined, []);
    r2.read(header.subarray(0, 2));
    r2.read(header.subarray(2, 8));
    assert.throws(
      () => r2.read(header.subarray(8)),
      (e: unknown) => e instanceof H2ConnectionError && e.h2code === H2_FRAME_SIZE_ERROR,
    );
  });

  it('stops handing frames on once the connection stops reading, and keeps none of the rest', () => {
    const { wire } = sampleFrames(300);
    const seen: Seen[] = [];
    let open = true;
    const r = new FrameReader(300, undefined, (type, flags, streamId, payload) => {
      seen.push({ type, flags, streamId, payload: payload.toString('hex') });
      if (seen.length === 2) open = false;
    }, () => open);
    r.read(wire);
    assert.equal(seen.length, 2);
    r.read(wire);
    assert.equal(seen.length, 2);
  });
});
