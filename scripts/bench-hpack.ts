// What decoding a request's header block costs (src/grpcserver/hpack.ts), on blocks real clients
// sent to a member (captured by a recording proxy: etcdctl 3.4's grpc-go 1.33.3 running `check
// perf`, and the etcd3 npm client's grpc-js 1.14.7): the block into fields, and then also the
// fields into the stream's headers object, as h2_conn.ts does.
//
//   node dist/scripts/bench-hpack.js [iterations]
//
// Scenarios: a connection's first request (a fresh decoder each time: literals, Huffman strings,
// table inserts), and a warm connection's requests (the client refers to its dynamic table:
// grpc-go's unary block is 8 one-byte references; grpc-js sends :path as a Huffman literal each
// time). The figures against hpack.js (the decoder this one replaced, driven through its private
// members, so no longer a dependency) are in docs/performance.md.
import { HpackDecoder } from '../src/grpcserver/hpack';

const LIST_BYTES_MAX = 1024 * 1024;

const BLOCKS = {
  // :method POST, :scheme http, :path /etcdserverpb.KV/Range, :authority 127.0.0.1:23793,
  // content-type application/grpc, user-agent grpc-go/1.33.3, te trailers, grpc-timeout,
  // client-api-version 3.4
  goFirst:
    '8386459060a924882d9dcb6571af9b8b1b4754c5418b089d5c0b8170dc132ebecf5f8b1d75d0620d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f876df7df7df6ddb7408d25062d495875996ee5b1063d5f03332e34',
  goSecond: '8386458f60a924882d9dcb6571af9b8b1aed4fc4c3c2c1bf', // :path /etcdserverpb.KV/Put entered
  goSteady: '8386bec4c3c2c1bf', // the same Put: all indexed
  // :authority, :method POST, :path /etcdserverpb.KV/Put, :scheme http, grpc-accept-encoding,
  // accept-encoding identity, user-agent grpc-node-js/1.14.7, content-type application/grpc, te
  jsFirst:
    '418b089d5c0b8170dc132ebecf83048f60a924882d9dcb6571af9b8b1aed4f86408e9acac8b0c842d6958b510f21aa9b903485a9264fafa90b2d03497ea6f66aff50863485a9264faf7a8e9acac8b54790ab7443015c2d2eef5f8b1d75d0620d263d4c4d656440027465864d833505b11f',
  jsSteady: 'c383048f60a924882d9dcb6571af9b8b1aed4f86c2c1c0bfbe', // :path a literal without indexing
};
const block = (k: keyof typeof BLOCKS): Buffer => Buffer.from(BLOCKS[k], 'hex');

type Headers = Record<string, string | string[]>;

/** One decoder under test: a connection's context, decoding a block into its fields (the count
 *  returned) and, with `headers`, those into a headers object. */
interface Contender {
  name: string;
  connection(headers: boolean): (b: Buffer) => number;
}

function addField(h: Headers, name: string, value: string): void {
  const prev = h[name];
  if (prev === undefined) h[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else h[name] = [prev, value];
}

const ours: Contender = {
  name: 'hpack.ts',
  connection(headers) {
    const d = new HpackDecoder(LIST_BYTES_MAX);
    return (b) => {
      d.decode(b);
      if (!headers) return d.count;
      const h: Headers = {};
      for (let i = 0; i < d.count; i++) addField(h, d.names[i]!, d.values[i]!);
      return h[':path'] === undefined ? 0 : d.count;
    };
  },
};

/** CPU ns per block of one scenario: a new connection's block, or `warm` blocks first and then
 *  `steady` n times. */
function measure(c: Contender, headers: boolean, n: number, scenario: { fresh?: Buffer; warm?: Buffer[]; steady?: Buffer }): number {
  let sink = 0;
  // CPU time, not wall time: on a shared machine the run queue would otherwise be measured too.
  const t0 = process.cpuUsage();
  if (scenario.fresh) {
    for (let i = 0; i < n; i++) sink += c.connection(headers)(scenario.fresh);
  } else {
    const decode = c.connection(headers);
    for (const b of scenario.warm ?? []) decode(b);
    for (let i = 0; i < n; i++) sink += decode(scenario.steady!);
  }
  const used = process.cpuUsage(t0);
  const ns = ((used.user + used.system) * 1000) / n;
  if (sink === 0) throw new Error('nothing decoded');
  return ns;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function main(): void {
  const n = Number(process.argv[2] ?? 200_000);
  const scenarios: [string, { fresh?: Buffer; warm?: Buffer[]; steady?: Buffer }][] = [
    ['grpc-go warm (8 B, all indexed)', { warm: [block('goFirst'), block('goSecond')], steady: block('goSteady') }],
    ['grpc-js warm (25 B, :path Huffman literal)', { warm: [block('jsFirst')], steady: block('jsSteady') }],
    ['grpc-go first block (108 B, new decoder)', { fresh: block('goFirst') }],
    ['grpc-js first block (113 B, new decoder)', { fresh: block('jsFirst') }],
  ];
  const contenders = [ours];
  const rounds = 7;
  console.log(`CPU ns per block, median of ${rounds} rounds of ${n} (first blocks: ${Math.ceil(n / 10)}); fields only / fields + headers object`);
  for (const [label, sc] of scenarios) {
    // times[contender][headers ? 1 : 0]: rounds alternate between the contenders.
    const times = contenders.map((): [number[], number[]] => [[], []]);
    const iterations = sc.fresh ? Math.ceil(n / 10) : n; // a new connection costs some µs
    for (const c of contenders) for (const headers of [false, true]) measure(c, headers, Math.min(n, 20_000), sc); // warm the JIT
    for (let r = 0; r < rounds; r++) {
      contenders.forEach((c, i) => {
        for (const headers of [false, true]) times[i]![headers ? 1 : 0].push(measure(c, headers, iterations, sc));
      });
    }
    const cells = contenders.map((c, i) => `${c.name} ${median(times[i]![0]).toFixed(0).padStart(5)} / ${median(times[i]![1]).toFixed(0).padStart(5)}`);
    console.log(`${label.padEnd(44)} ${cells.join('   ')}`);
  }
}

main();
