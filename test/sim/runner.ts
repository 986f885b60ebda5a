// Runs one seed (or many) and reports failures with everything needed to replay them.

import type { RaftBugs } from '../../src/raft';
import { describeMix, drawMix, MIX_NAMES } from './faults';
import type { MixName } from './faults';
import type { SimResult } from './sim';
import { Simulation } from './sim';

export interface SeedOutcome {
  ok: boolean;
  seed: number;
  mix: string;
  error?: string;
  trace?: string;
  result?: SimResult;
}

export interface RunOptions {
  mix?: MixName;
  bugs?: RaftBugs;
}

export function runSeed(seed: number, opts: RunOptions = {}): SeedOutcome {
  const mixName = opts.mix ?? MIX_NAMES[seed % MIX_NAMES.length]!;
  const mix = drawMix(seed, mixName);
  if (opts.bugs !== undefined) mix.bugs = { ...opts.bugs };
  const desc = describeMix(mixName, mix);
  const sim = new Simulation(seed, mix);
  try {
    const result = sim.run();
    return { ok: true, seed, mix: desc, result };
  } catch (e) {
    const err = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return { ok: false, seed, mix: desc, error: err, trace: sim.recentTrace() };
  }
}

export function formatFailure(o: SeedOutcome, opts: RunOptions = {}): string {
  const flags = opts.mix !== undefined ? ` --mix ${opts.mix}` : '';
  return (
    `FAIL seed=${o.seed} mix: ${o.mix}\n  ${o.error}\n` +
    `  replay: npm run sim -- --seed ${o.seed}${flags}\n` +
    `  last events:\n    ${(o.trace ?? '').split('\n').join('\n    ')}`
  );
}
