// The simulated application: a tiny KV state machine with client-request deduplication, so that a
// client can retry a write whose fate it does not know without applying it twice.

import { EntryType } from '../../src/raft';
import type { Entry } from '../../src/raft';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeWrite(reqId: number, key: string, value: string): Uint8Array {
  return enc.encode(`${reqId}|${key}|${value}`);
}

export function decodeWrite(data: Uint8Array): { reqId: number; key: string; value: string } | undefined {
  if (data.byteLength === 0) return undefined;
  const [id, key, value] = dec.decode(data).split('|');
  return { reqId: Number(id), key: key!, value: value! };
}

export class Kv {
  values = new Map<string, string>();
  /** reqId -> index at which the request first took effect. */
  seen = new Map<number, number>();

  /** Applies a normal entry; returns the request id it carried (if any) and its first-effect index. */
  apply(e: Entry): { reqId: number; firstIndex: number } | undefined {
    if (e.type !== EntryType.Normal) return undefined;
    const w = decodeWrite(e.data);
    if (w === undefined) return undefined;
    let first = this.seen.get(w.reqId);
    if (first === undefined) {
      first = e.index;
      this.seen.set(w.reqId, e.index);
      this.values.set(w.key, w.value);
    }
    return { reqId: w.reqId, firstIndex: first };
  }

  encode(): Uint8Array {
    return enc.encode(JSON.stringify({ v: [...this.values], s: [...this.seen] }));
  }

  static decode(data: Uint8Array): Kv {
    const kv = new Kv();
    if (data.byteLength === 0) return kv;
    const o = JSON.parse(dec.decode(data)) as { v: [string, string][]; s: [number, number][] };
    kv.values = new Map(o.v);
    kv.seen = new Map(o.s);
    return kv;
  }
}
