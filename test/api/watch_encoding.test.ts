// The watch fan-out's hand-assembled WatchResponse bytes must decode to exactly the response the
// protobufjs path would have sent.
import assert from 'node:assert/strict';
import type protobuf from 'protobufjs';
import { CONVERSION, protoRoot } from '../../src/proto';
import { encodeEvent, encodeEventsResponse, encodeHeader } from '../../src/api/watch_encoding';
import { Rng } from '../../src/util/rng';

describe('watch response encoding (fan-out path)', () => {
  const WatchResponse = protoRoot().lookupType('etcdserverpb.WatchResponse');
  const decode = (b: Buffer) => WatchResponse.toObject(WatchResponse.decode(b), CONVERSION);
  const viaProtobufjs = (o: object) => decode(Buffer.from(WatchResponse.encode(WatchResponse.fromObject(o) as protobuf.Message).finish()));

  it('decodes to the same response as protobufjs encodes, for random events and ids', () => {
    const rng = new Rng(7);
    const int = (n: number) => Math.floor(rng.float() * n);
    for (let round = 0; round < 300; round++) {
      const header = { cluster_id: '14841639068965178418', member_id: String(int(2 ** 52)), revision: int(2 ** 40), raft_term: int(1000) };
      const events = Array.from({ length: 1 + int(4) }, () => {
        const kv = () => ({ key: Buffer.from(`k${int(1e6)}`), create_revision: int(2 ** 33), mod_revision: int(2 ** 33), version: int(100), value: Buffer.alloc(int(400), int(256)), lease: int(3) === 0 ? '0' : String(int(2 ** 53)) });
        return { type: int(2), kv: kv(), prev_kv: int(2) === 0 ? kv() : null };
      });
      const watchId = [0, 1, 127, 128, 300, 2 ** 40, int(2 ** 31)][int(7)]!;
      const bytes = encodeEventsResponse(encodeHeader(header), watchId, events.map((e) => encodeEvent(e)));
      assert.deepEqual(decode(bytes), viaProtobufjs({ header, watch_id: watchId, events }), `round ${round}`);
    }
  });
});
