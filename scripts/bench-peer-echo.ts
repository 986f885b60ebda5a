// Two transports in one process on loopback, each with its peer port (src/grpcserver), as two
// members: the cost of the raft message stream alone, without Raft, WAL or MVCC.
//   echo:     A sends one MsgApp (one entry of VAL_BYTES), B answers with a MsgAppResp, A sends the
//             next when it arrives: wall and CPU time per round trip (both sides' CPU);
//   pipeline: A sends BATCH MsgApps per event-loop turn, as a leader under load does, for the
//             run's duration: messages per second and CPU per message.
// For an A/B, copy the compiled script into the other build's dist/scripts and run both there
// (the Transport API it uses is the same). Bounded: COUNT round trips, or SECONDS of pipeline.
//
//   node dist/scripts/bench-peer-echo.js [echo|pipeline] [COUNT=20000 | SECONDS=5]
//   (env VAL_BYTES=256, BATCH=100)
import { ClientListener } from '../src/grpcserver/listener';
import { H2GrpcServer } from '../src/grpcserver/server';
import { EntryType, MessageType, newMessage, type Message, type NodeId } from '../src/raft';
import { Logger } from '../src/util/log';
import { PEER_MESSAGE_BYTES_MAX, Transport } from '../src/transport';

const mode = process.argv[2] ?? 'echo';
const VAL = Number(process.env['VAL_BYTES'] ?? 256);
const BATCH = Number(process.env['BATCH'] ?? 100);
const CLUSTER = 0x1234n;
const log = new Logger('warn');

interface Side {
  transport: Transport;
  listener: ClientListener;
  url: string;
}

async function side(id: NodeId, onMessage: (m: Message) => void): Promise<Side> {
  const transport = new Transport({ id, clusterId: CLUSTER, log, onMessage, onSnapshot: () => Promise.resolve() });
  const grpc = new H2GrpcServer({ maxReceiveBytes: PEER_MESSAGE_BYTES_MAX });
  transport.register(grpc);
  const listener = new ClientListener({ grpc });
  const [port] = await listener.listen(['http://127.0.0.1:0']);
  return { transport, listener, url: `http://127.0.0.1:${port}` };
}

const value = Buffer.alloc(VAL, 7);
const app = (i: number): Message =>
  newMessage({ type: MessageType.MsgApp, from: 1n, to: 2n, term: 2, logTerm: 2, index: i, commit: i, entries: [{ term: 2, index: i + 1, type: EntryType.Normal, data: value }] });
const resp = (i: number): Message => newMessage({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 2, index: i });

async function main(): Promise<void> {
  let received = 0;
  let onResp: (m: Message) => void = () => undefined;
  const b = await side(2n, (m) => {
    received++;
    if (mode === 'echo') b.transport.send([resp(m.index)]);
  });
  const a = await side(1n, (m) => onResp(m));
  a.transport.addPeer(2n, [b.url]);
  b.transport.addPeer(1n, [a.url]);
  // Streams up and warm (JIT) before the clock starts.
  for (let i = 0; i < 2000; i++) {
    a.transport.send([app(i)]);
    if (i % 50 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  const warmDeadline = Date.now() + 5_000;
  while (received < 2000 && Date.now() < warmDeadline) await new Promise((r) => setTimeout(r, 5));
  if (mode === 'echo') {
    const count = Number(process.argv[3] ?? 20_000);
    await new Promise((r) => setTimeout(r, 200)); // the warm-up's answers
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      let n = 0;
      onResp = () => {
        if (++n === count) return resolve();
        a.transport.send([app(n)]);
      };
      a.transport.send([app(0)]);
    });
    const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    console.log(`echo: ${count} round trips, ${VAL} B entries: ${(wallUs / count).toFixed(1)} us/round trip, CPU ${((cpu.user + cpu.system) / count).toFixed(1)} us/round trip (both sides)`);
  } else {
    const seconds = Number(process.argv[3] ?? 5);
    const start = received;
    const cpu0 = process.cpuUsage();
    const t0 = Date.now();
    let sent = 0;
    while (Date.now() - t0 < seconds * 1000) {
      const batch: Message[] = [];
      for (let i = 0; i < BATCH; i++) batch.push(app(sent++));
      a.transport.send(batch);
      await new Promise((r) => setImmediate(r));
    }
    const drainDeadline = Date.now() + 10_000;
    while (received - start < sent && Date.now() < drainDeadline) await new Promise((r) => setTimeout(r, 5));
    const ms = Date.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const got = received - start;
    console.log(`pipeline: ${got} of ${sent} messages (${BATCH} per turn, ${VAL} B entries) in ${ms} ms: ${Math.round((got * 1000) / ms)} msg/s, CPU ${((cpu.user + cpu.system) / got).toFixed(2)} us/message (both sides), dropped ${a.transport.stats.dropped}`);
  }
  await a.transport.close(0);
  await b.transport.close(0);
  await a.listener.close(0);
  await b.listener.close(0);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
