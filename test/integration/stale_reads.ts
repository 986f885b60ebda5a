// Linearizable reads during faults: a read issued after a put was acknowledged (by any member) must
// see that put, or fail; returning older data is a stale read. Runs beside a Writer (whose keys
// are unique and written once), reading its latest acknowledged key on a member other than the
// one that acknowledged it whenever there is one.
import { sleep, unary, type Writer } from './cluster_harness';

interface RangeReply {
  header: { revision: string };
  kvs: { key: Buffer; value: Buffer; mod_revision: string }[];
}

export class StaleReadChecker {
  /** Reads that returned older data than an acknowledged put (must stay empty). */
  readonly violations: string[] = [];
  /** Reads answered (and checked), and reads that failed (unavailable, timed out: allowed). */
  served = 0;
  failed = 0;
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly writer: Writer,
    private readonly endpoints: () => string[],
    private readonly concurrency = 2,
    private readonly deadlineMs = 1500,
  ) {}

  start(): this {
    for (let c = 0; c < this.concurrency; c++) this.loops.push(this.loop(c));
    return this;
  }

  private async loop(c: number): Promise<void> {
    let turn = c;
    while (!this.stopped) {
      const acked = this.writer.acked;
      const eps = this.endpoints();
      if (acked.length === 0 || eps.length === 0) {
        await sleep(50);
        continue;
      }
      const a = acked[acked.length - 1]!;
      const elsewhere = eps.filter((e) => e !== a.endpoint);
      const pool = elsewhere.length > 0 ? elsewhere : eps;
      const endpoint = pool[turn++ % pool.length]!;
      const issuedAtMs = Date.now();
      let r: RangeReply;
      try {
        r = await unary<RangeReply>(endpoint, 'KV', 'Range', { key: Buffer.from(a.key) }, this.deadlineMs);
      } catch {
        // Unavailable, no leader, timed out: a refused read is never stale.
        this.failed++;
        await sleep(20);
        continue;
      }
      this.served++;
      const kv = r.kvs[0];
      const rev = Number(r.header.revision);
      if (!kv || kv.value.toString() !== a.value || Number(kv.mod_revision) !== a.revision || rev < a.revision) {
        this.violations.push(
          `${endpoint}: linearizable read of ${a.key} (acknowledged at revision ${a.revision} via ${a.endpoint}, ${issuedAtMs - a.atMs} ms before the read) ` +
            `returned ${kv ? `${kv.value.toString()}@${kv.mod_revision}` : 'nothing'} at revision ${rev}`,
        );
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  summary(): string {
    return `${this.served} linearizable reads checked, ${this.failed} refused, ${this.violations.length} stale`;
  }
}
