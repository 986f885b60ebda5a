// A deliberately buggy parser for the engine's self-test (fuzz.test.ts): it breaks (a TypeError,
// as a real bug would) only behind a 4-byte magic compared one byte at a time. Random bytes find
// it about once in 2^32 inputs; coverage sees each matched byte as a new block, so a guided run
// climbs to it a byte at a time.
import type { FuzzTarget } from './engine';

export class ToyError extends Error {}

export function toyParse(b: Buffer): number {
  if (b.length < 4) throw new ToyError('short');
  if (b[0] === 0x46) {
    if (b[1] === 0x55) {
      if (b[2] === 0x5a) {
        if (b[3] === 0x5a) {
          const lengths: Record<string, Buffer> = {};
          // The bug: a field read from a missing record.
          return lengths['body']!.length;
        }
      }
    }
  }
  throw new ToyError('no magic');
}

export const TARGETS: Record<string, () => FuzzTarget> = {
  toy: () => ({
    scripts: ['test/fuzz/toy.js'],
    run: (input) => void toyParse(input),
    declared: (err) => err instanceof ToyError,
    inputBytesMax: 8,
  }),
  /** Loops forever on the input "hang" (the watchdog's self-test). */
  toy_hang: () => ({
    scripts: ['test/fuzz/toy.js'],
    run: (input) => {
      if (input.toString('latin1') !== 'hang') return;
      for (let spins = 0; spins >= 0; spins = (spins + 1) % 1000) void spins;
    },
    declared: () => false,
  }),
};
