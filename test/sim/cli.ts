// Simulation command line.
//   npm run sim -- --seed S            replay one seed exactly (prints its result or failure)
//   npm run sim -- --seeds N [--from F] soak N seeds, printing progress, seeds/s and failures
//   options: --mix calm|lossy|partitions|crashes|membership|chaos   --bug <name> (broken variant)

import { MIX_NAMES } from './faults';
import type { MixName } from './faults';
import type { RaftBugs } from '../../src/raft';
import { formatFailure, runSeed } from './runner';
import type { RunOptions } from './runner';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function main(): number {
  const opts: RunOptions = {};
  const mix = arg('mix');
  if (mix !== undefined) {
    if (!MIX_NAMES.includes(mix as MixName)) {
      console.error(`unknown mix ${mix}; one of ${MIX_NAMES.join(', ')}`);
      return 2;
    }
    opts.mix = mix as MixName;
  }
  const bug = arg('bug');
  if (bug !== undefined) opts.bugs = { [bug]: true } as RaftBugs;
  const seed = arg('seed');
  if (seed !== undefined) {
    const o = runSeed(Number(seed), opts);
    if (o.ok) {
      console.log(`ok seed=${o.seed} mix: ${o.mix}`);
      console.log(JSON.stringify(o.result));
      return 0;
    }
    console.log(formatFailure(o, opts));
    return 1;
  }
  const n = Number(arg('seeds') ?? '1000');
  const from = Number(arg('from') ?? '1');
  const t0 = process.hrtime.bigint();
  let failures = 0;
  let lastReport = t0;
  for (let s = from; s < from + n; s++) {
    const o = runSeed(s, opts);
    if (!o.ok) {
      failures++;
      console.log(formatFailure(o, opts));
    }
    const now = process.hrtime.bigint();
    if (now - lastReport > 2_000_000_000n || s === from + n - 1) {
      lastReport = now;
      const secs = Number(now - t0) / 1e9;
      const done = s - from + 1;
      console.log(`progress ${done}/${n} seeds, ${(done / secs).toFixed(1)} seeds/s, ${failures} failures`);
    }
  }
  return failures === 0 ? 0 : 1;
}

process.exitCode = main();
