// The fuzzing loop's thread (started by run.ts). Coverage is switched on here before the targets'
// modules are loaded: a worker has a module cache of its own, so the target's code is compiled with
// block counters whatever the main thread loaded before.
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import fs from 'node:fs';
import { BlockCoverage, autoDictionary, fuzz, type FuzzTarget } from './engine';
import { SHARED_HEADER_BYTES, type WorkerInput } from './run';


async function main(): Promise<void> {
  const w = workerData as WorkerInput;
  const port = parentPort!;
  // Scripts are not known until the target is built; coverage must start before its modules load.
  let scripts: readonly string[] = [];
  const coverage = BlockCoverage.start((url) => scripts.some((s) => url.includes(s)));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(w.module) as { TARGETS: Record<string, () => FuzzTarget | Promise<FuzzTarget>> };
  const make = mod.TARGETS[w.target];
  if (!make) throw new Error(`no fuzz target ${w.target} in ${w.module}`);
  const target = await make();
  scripts = target.scripts;
  // The literals of the target's own compiled scripts (those loaded, in load order).
  const sources = Object.keys(require.cache)
    .filter((f) => scripts.some((s) => f.includes(s)))
    .sort()
    .map((f) => fs.readFileSync(f, 'utf8'));
  const autoTokens = autoDictionary(sources);
  const ctrl = new Int32Array(w.shared, 0, 2);
  const started = new Float64Array(w.shared, 8, 1);
  const bytes = new Uint8Array(w.shared, SHARED_HEADER_BYTES);
  const stats = await fuzz(target, coverage, w.seeds.map((s) => Buffer.from(s)), w, {
    starting(input) {
      const n = Math.min(input.length, bytes.length);
      bytes.set(input.subarray(0, n));
      Atomics.store(ctrl, 1, n);
      started[0] = Date.now();
      Atomics.store(ctrl, 0, 1);
    },
    finished() {
      Atomics.store(ctrl, 0, 0);
    },
    newEntry(input) {
      port.postMessage({ type: 'entry', input });
    },
    finding(f) {
      port.postMessage({ type: 'finding', finding: f });
    },
  }, autoTokens);
  coverage.stop();
  target.close?.();
  port.postMessage({ type: 'done', stats });
}

if (!isMainThread) main().catch((err: unknown) => {
  // Reaches the main thread as the worker's 'error' event (a crash finding there).
  throw err;
});
