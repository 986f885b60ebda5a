// Protobuf varints for the hand-written encoders (api/watch_encoding.ts, api/range_sliced.ts): the
// length of a varint and writing one into a Buffer, for numbers up to 2^53 and for int64 values
// (a negative int64 is its 64-bit two's complement, 10 bytes).

/** Bytes of `n` (0 ≤ n ≤ 2^53) as a varint. */
export function varintBytes(n: number): number {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/** Writes `n` (0 ≤ n ≤ 2^53) at `off`; returns the offset after it. */
export function writeVarint(buf: Buffer, off: number, n: number): number {
  while (n >= 128) {
    buf[off++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[off++] = n;
  return off;
}

/** Bytes of an int64 as protobuf encodes it. */
export function varint64Bytes(n: bigint): number {
  let u = BigInt.asUintN(64, n);
  let len = 1;
  while (u >= 128n) {
    u >>= 7n;
    len++;
  }
  return len;
}

/** Writes an int64 as protobuf encodes it; returns the offset after it. */
export function writeVarint64(buf: Buffer, off: number, n: bigint): number {
  let u = BigInt.asUintN(64, n);
  while (u >= 128n) {
    buf[off++] = Number(u & 127n) | 128;
    u >>= 7n;
  }
  buf[off++] = Number(u);
  return off;
}
