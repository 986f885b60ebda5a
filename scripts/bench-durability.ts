// Durability benchmarks for the backend (issue: Durability):
//   - restart time: rebuilding the in-memory MVCC store from a LevelDB backend with N keys;
//   - the longest event-loop stall while streaming a consistent snapshot of that backend, measured
//     with perf_hooks.monitorEventLoopDelay while a timer keeps ticking.
// Usage: node dist/scripts/bench-durability.js [--keys=1000000] [--dir=/tmp/...]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { MvccStore } from '../src/mvcc';
import { Backend } from '../src/storage/backend/backend';

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

async function main(): Promise<void> {
  const keys = Number(arg('keys', '1000000'));
  const dir = arg('dir', fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-bench-dur-')));
  const value = Buffer.alloc(256, 'v');
  console.log(`backend ${dir}, ${keys} keys of 256 B`);

  let t = process.hrtime.bigint();
  const store = new MvccStore();
  const backend = await Backend.open(path.join(dir, 'backend'));
  const PER_TXN = 100;
  let index = 0;
  for (let i = 0; i < keys; i += PER_TXN) {
    const txn = store.write();
    for (let j = i; j < Math.min(keys, i + PER_TXN); j++) txn.put(Buffer.from(`key/${String(j).padStart(10, '0')}`), value, 0n);
    const r = txn.end();
    backend.stageEvents(r.events, r.revision);
    if ((i / PER_TXN) % 50 === 49) await backend.commit(++index, 1);
  }
  await backend.commit(++index, 1, true);
  console.log(`load:    ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(1)} s to write ${keys} keys`);

  // Snapshot while the loop is watched.
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  const ticker = setInterval(() => undefined, 5);
  t = process.hrtime.bigint();
  const { chunks } = await backend.openSnapshot();
  let bytes = 0;
  for await (const c of chunks) bytes += c.length;
  const snapSecs = Number(process.hrtime.bigint() - t) / 1e9;
  h.disable();
  clearInterval(ticker);
  console.log(
    `snapshot: ${(bytes / 1e6).toFixed(0)} MB in ${snapSecs.toFixed(1)} s; event-loop delay max ${(h.max / 1e6).toFixed(1)} ms, p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms`,
  );
  await backend.close();

  // Restart: open + rebuild the index.
  const h2 = monitorEventLoopDelay({ resolution: 5 });
  h2.enable();
  t = process.hrtime.bigint();
  const b2 = await Backend.open(path.join(dir, 'backend'));
  const loaded = await b2.load();
  const restartSecs = Number(process.hrtime.bigint() - t) / 1e9;
  h2.disable();
  console.log(
    `restart: ${restartSecs.toFixed(1)} s to rebuild ${loaded.store.keyCount} keys (applied index ${loaded.appliedIndex}); event-loop delay max ${(h2.max / 1e6).toFixed(1)} ms`,
  );
  await b2.close();
  if (!process.argv.some((x) => x.startsWith('--dir='))) fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
