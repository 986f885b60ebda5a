// The gateway rows of docs/security.md's hostile-client table: the bounded attacks of
// test/hostile/gateway_util.ts against each member given (etcd and quorumkv side by side), each
// under a prober (POST /v3/kv/range every 100 ms); prints one line per attack with the slowest
// probe and the member's RSS. About 2 minutes for two members.
//
//   node dist/scripts/hostile-gateway.js etcd=http://127.0.0.1:2379=<pid> quorumkv=http://127.0.0.1:23790=<pid>
import { hugeIntegers, manyCompares, Prober, probeOnce, rssBytes, slowHeaders, unfinishedValueThenTrickle } from '../test/hostile/gateway_util';

const ATTACK_MAX_MS = 8000;

async function measure(name: string, url: string, pid: number): Promise<void> {
  const port = Number(new URL(url).port);
  const row = async (what: string, attack: () => Promise<unknown>) => {
    const prober = new Prober(url);
    const t0 = Date.now();
    const result = await attack();
    const probes = await prober.stop();
    const after = await probeOnce(url);
    const rss = (rssBytes(pid) / 2 ** 20).toFixed(0);
    console.log(`${name}\t${what}\t${JSON.stringify(result)}\t${Date.now() - t0} ms\tprobes ${probes.count}, slowest ${probes.maxMs.toFixed(0)} ms, after ${after.toFixed(0)} ms\tRSS ${rss} MiB`);
  };
  await row('3.5 MB value unfinished + 3,000 one-byte chunks (watch)', () => unfinishedValueThenTrickle(port, '/v3/watch', 3_500_000, 3000, ATTACK_MAX_MS));
  await row('3.5 MB value unfinished + 3,000 one-byte chunks (kv/put)', () => unfinishedValueThenTrickle(port, '/v3/kv/put', 3_500_000, 3000, ATTACK_MAX_MS));
  await row('3 MB integer, 2 clients, 5 s', () => hugeIntegers(port, 3_000_000, 2, 5000));
  await row('Txn with 200k compares, 4 clients', async () => ({ answered: await manyCompares(port, 200_000, 4, 20_000) }));
  await row('100 slow-header connections, 6 s', () => slowHeaders(port, 100, 50, 6000));
  for (const rev of ['9007199254740993', '9223372036854775807']) {
    const r = await fetch(`${url}/v3/kv/range`, { method: 'POST', body: `{"key":"YQ==","revision":"${rev}"}` });
    console.log(`${name}\tRange at revision ${rev}\t${r.status} ${await r.text()}`);
  }
}

async function main(): Promise<void> {
  const targets = process.argv.slice(2).map((a) => a.split('='));
  if (targets.length === 0 || targets.some((t) => t.length !== 3)) throw new Error('usage: hostile-gateway.js name=url=pid ...');
  for (const [name, url, pid] of targets) await measure(name!, url!, Number(pid));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
