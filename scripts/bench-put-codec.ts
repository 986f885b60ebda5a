// The codecs of one put in a fresh process (issue 20, the cold start): per put, the client's
// PutRequest decoded, the log entry encoded (leader) and decoded (every member), the PutResponse
// encoded, either through protobufjs (decode + toObject, encode, fromObject + encode; what the member
// did before src/proto/put_codec.ts) or through the hand-written codecs. Prints the process's CPU
// (all threads: V8's compile and GC threads included) per put over the first --cold puts and over
// the --warm puts after them. Run each side in its own fresh process, alternating.
//
// Usage: node dist/scripts/bench-put-codec.js --impl=protobufjs|fast [--cold=5000] [--warm=50000]
import { CONVERSION, protoRoot } from '../src/proto';
import { decodePutEntry, decodePutRequest, encodePutEntry, encodePutResponse } from '../src/proto/put_codec';
import type { PutRequest } from '../src/proto/types';
import { configureJit } from '../src/util/v8_jit';

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

function main(): void {
  configureJit(); // as a member does
  const impl = arg('impl', 'fast');
  const cold = Number(arg('cold', '5000'));
  const warm = Number(arg('warm', '50000'));
  if (impl !== 'fast' && impl !== 'protobufjs') throw new Error('--impl=fast|protobufjs');
  const root = protoRoot();
  const reqT = root.lookupType('etcdserverpb.PutRequest');
  const resT = root.lookupType('etcdserverpb.PutResponse');
  const entryT = root.lookupType('quorumkvpb.InternalRequest');
  const value = Buffer.alloc(256, 7);
  const clusterId = { low: 0x1234567, high: 0x7abcdef, unsigned: true };
  const memberId = { low: 0x7654321, high: 0x1fedcba, unsigned: true };
  // The client's requests, as etcd's benchmark sends them (8-byte sequential keys, 256 B values).
  const wire: Buffer[] = [];
  for (let i = 0; i < 1000; i++) wire.push(Buffer.from(reqT.encode(reqT.fromObject({ key: Buffer.from(String(i).padStart(8, '0')), value })).finish()));
  const fast = impl === 'fast';
  let sink = 0;
  const onePut = (i: number): void => {
    const b = wire[i % wire.length]!;
    const put = (fast ? decodePutRequest(b) : reqT.toObject(reqT.decode(b), CONVERSION)) as PutRequest;
    const id = (0x1234n << 48n | BigInt(i)).toString();
    const entryObj = { id, put };
    const entry = fast ? encodePutEntry(entryObj)! : Buffer.from(entryT.encode(entryObj).finish());
    const applied = fast ? decodePutEntry(entry)! : (entryT.toObject(entryT.decode(entry), CONVERSION) as { put: PutRequest });
    const response = { header: { cluster_id: clusterId, member_id: memberId, revision: i + 2, raft_term: 2 }, prev_kv: null };
    const out = fast ? encodePutResponse(response)! : resT.encode(resT.fromObject(response)).finish();
    sink += out.length + applied.put.key.length;
  };
  const cpu = (): number => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  const c0 = cpu();
  for (let i = 0; i < cold; i++) onePut(i);
  const c1 = cpu();
  for (let i = cold; i < cold + warm; i++) onePut(i);
  const c2 = cpu();
  console.log(`${impl}: cold ${((c1 - c0) / cold).toFixed(2)} µs/put (first ${cold}), warm ${((c2 - c1) / warm).toFixed(2)} µs/put (next ${warm}) [${sink}]`);
}

main();
