// A small coverage-guided fuzzer built on V8's own block coverage (the inspector's precise
// coverage, the data behind `node --experimental-test-coverage` and c8), deterministic from a seed.
//
// Why our own: @jazzer.js/core, the maintained libFuzzer binding for Node, ships a prebuilt addon
// that needs glibc 2.38 (this Debian 12 has 2.36), and its older versions download or compile their
// addon from the network. V8 already counts every block when precise coverage is on, and the
// inspector's `Profiler.takePreciseCoverage` answers synchronously on the same thread and resets
// the counters, so "which blocks did this input reach" costs one protocol round after each input.
//
// How it works (the libFuzzer/AFL loop, small):
//   - coverage starts before the target's modules are loaded (a function compiled earlier has no
//     block counters), so this runs in a worker thread of its own (worker.ts);
//   - after each input, the blocks of the target's scripts (filtered by script URL) that ran, with
//     their hit counts in AFL's buckets (1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+), are its features;
//     an input with a feature never seen before joins the corpus;
//   - each new input is a corpus entry (the newer ones more often) put through a stack of classic
//     mutations: bit and byte flips, random and "interesting" integers, arithmetic, range insert /
//     delete / duplicate, the target's dictionary tokens, splicing with another entry;
//   - an error the target does not declare (an AssertionError, a TypeError, a RangeError...), an
//     allocation above a bound, or an input that runs too long (the worker is watched from the
//     main thread, which reads the input from shared memory) is a finding.
//
// V8 reports a block only where its count differs from the block around it, so a branch taken
// every time is invisible until some input does not take it. The engine therefore remembers every
// block range a function ever reported, and a block's count in one run is that of the innermost
// range reported this run that contains it.
import inspector from 'node:inspector';
import { Rng } from '../../src/util/rng';

/** What one fuzz target is: the function under test and what it may throw. */
export interface FuzzTarget {
  /** Substrings of the script URLs whose blocks count as coverage (e.g. 'src/grpcserver/hpack.js'). */
  readonly scripts: readonly string[];
  /** Runs one input. Throws (or rejects with) a declared error for input it refuses. */
  run(input: Buffer): void | Promise<void>;
  /** The errors the module declares for bad input; anything else thrown is a finding. */
  declared(err: unknown): boolean;
  /** Tokens the mutator inserts or writes over (magic numbers, keywords, frame headers). */
  readonly dictionary?: readonly Buffer[];
  /** Inputs are kept at most this long (default INPUT_BYTES_MAX_DEFAULT). */
  readonly inputBytesMax?: number;
  /** Releases what the target made (its scratch directory), after the run. */
  close?(): void;
}

export const INPUT_BYTES_MAX_DEFAULT = 4096;
/** A single allocation above this while an input runs is a finding: a length from the input
 *  used before it was checked. Parsers here read at most a few MiB per chunk. */
export const ALLOCATION_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** Mutations stacked on one input: 1 to 2^HAVOC_STACK_POW2_MAX. */
const HAVOC_STACK_POW2_MAX = 4;
/** Findings kept per run (one per distinct error signature). */
const FINDINGS_MAX = 20;

export interface Finding {
  /** 'error' (an undeclared exception), 'allocation', 'hang' or 'crash' (the worker died). */
  readonly kind: 'error' | 'allocation' | 'hang' | 'crash';
  /** The error's name and first message line, plus its top stack frame in our code. */
  readonly signature: string;
  readonly message: string;
  readonly stack?: string;
  readonly input: Buffer;
  /** Mutated inputs run before it (0: a seed). */
  readonly afterInputs: number;
}

export interface FuzzStats {
  readonly inputs: number;
  readonly seconds: number;
  readonly inputsPerSecond: number;
  /** Distinct blocks of the target's scripts reached by the seeds, and by the end. */
  readonly blocksAfterSeeds: number;
  readonly blocks: number;
  /** Entries in the corpus at the end (seeds included) and found in this run. */
  readonly corpusEntries: number;
  readonly newEntries: number;
}

/** A range of one function, as "url|fnStart|start|end". */
type BlockKey = string;

/** V8 block coverage of selected scripts, one input at a time. */
export class BlockCoverage {
  private readonly session = new inspector.Session();
  /** Per function ("url|start"): every block range it ever reported. */
  private readonly known = new Map<string, { start: number; end: number; key: BlockKey }[]>();
  /** Blocks ever reached, and features (block + count bucket) ever seen. */
  readonly blocks = new Set<BlockKey>();
  readonly features = new Set<string>();

  /** @param covers whether a script (by URL) is the target's. */
  constructor(private readonly covers: (url: string) => boolean) {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  /** Coverage is on in this thread for the functions compiled after this call. */
  static start(covers: (url: string) => boolean): BlockCoverage {
    return new BlockCoverage(covers);
  }

  /** Counters since the last call (resetting them): the number of new features, and new blocks
   *  (added to what was seen when `record`). */
  take(record: boolean): { newFeatures: number; newBlocks: number } {
    const res = this.post('Profiler.takePreciseCoverage') as inspector.Profiler.TakePreciseCoverageReturnType;
    let newFeatures = 0;
    let newBlocks = 0;
    const fresh: string[] = [];
    const freshBlocks: BlockKey[] = [];
    for (const script of res.result) {
      if (!this.covers(script.url)) continue;
      for (const fn of script.functions) {
        const ranges = fn.ranges;
        if (ranges.length === 0) continue;
        const fnKey = `${script.url}|${ranges[0]!.startOffset}`;
        let known = this.known.get(fnKey);
        if (!known) this.known.set(fnKey, (known = []));
        for (const r of ranges) {
          if (!known.some((k) => k.start === r.startOffset && k.end === r.endOffset)) {
            known.push({ start: r.startOffset, end: r.endOffset, key: `${fnKey}|${r.startOffset}|${r.endOffset}` });
          }
        }
        for (const k of known) {
          const count = innermostCount(ranges, k.start, k.end);
          if (count <= 0) continue;
          const feature = `${k.key}#${bucket(count)}`;
          if (!this.features.has(feature)) {
            newFeatures++;
            fresh.push(feature);
          }
          if (!this.blocks.has(k.key)) {
            newBlocks++;
            freshBlocks.push(k.key);
          }
        }
      }
    }
    if (record) {
      for (const f of fresh) this.features.add(f);
      for (const b of freshBlocks) this.blocks.add(b);
    }
    return { newFeatures, newBlocks };
  }

  stop(): void {
    this.post('Profiler.stopPreciseCoverage');
    this.post('Profiler.disable');
    this.session.disconnect();
  }

  /** Session.post on the thread it inspects answers before it returns. */
  private post(method: string, params?: object): unknown {
    const answer: { err?: Error | null; res?: unknown } = {};
    this.session.post(method, params, (err, res) => {
      answer.err = err;
      answer.res = res;
    });
    if (!('err' in answer)) throw new Error(`inspector ${method} did not answer synchronously`);
    if (answer.err) throw answer.err;
    return answer.res;
  }
}

/** The count of the innermost reported range around [start, end) (0 if none: not run). */
function innermostCount(ranges: readonly inspector.Profiler.CoverageRange[], start: number, end: number): number {
  let best: inspector.Profiler.CoverageRange | undefined;
  for (const r of ranges) {
    if (r.startOffset <= start && r.endOffset >= end && (!best || r.endOffset - r.startOffset <= best.endOffset - best.startOffset)) best = r;
  }
  return best ? best.count : 0;
}

/** AFL's hit-count buckets. */
function bucket(count: number): number {
  if (count <= 3) return count;
  if (count < 8) return 4;
  if (count < 16) return 8;
  if (count < 32) return 16;
  if (count < 128) return 32;
  return 128;
}

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40, 0x64];
const INTERESTING_16 = [0, 0x80, 0xff, 0x100, 0x200, 0x3e8, 0x400, 0x1000, 0x4000, 0x7fff, 0x8000, 0xffff];
const INTERESTING_32 = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 0x100000, 0x1000000, 0xfffffffe, 0x3fffffff];

/** The classic mutations, driven by one seeded Rng. */
export class Mutator {
  constructor(
    private readonly rng: Rng,
    private readonly dictionary: readonly Buffer[],
    private readonly bytesMax: number,
  ) {}

  /** A new input from `base` (and `other`, for splicing): 1..16 stacked mutations. */
  mutate(base: Buffer, other: Buffer | undefined): Buffer {
    let b: Buffer = Buffer.from(base);
    // Half the time one mutation (a single step is how a magic byte is matched), else a stack.
    const n = this.rng.chance(0.5) ? 1 : 1 << this.rng.int(HAVOC_STACK_POW2_MAX + 1);
    for (let i = 0; i < n; i++) b = this.once(b, other);
    return b.length > this.bytesMax ? b.subarray(0, this.bytesMax) : b;
  }

  private once(b: Buffer, other: Buffer | undefined): Buffer {
    const rng = this.rng;
    if (b.length === 0) return Buffer.from([rng.int(256)]);
    switch (rng.int(this.dictionary.length > 0 ? 14 : 12)) {
      case 0: {
        const i = rng.int(b.length);
        b[i] = b[i]! ^ (1 << rng.int(8));
        return b;
      }
      case 1:
        b[rng.int(b.length)] = rng.int(256);
        return b;
      case 2:
        b[rng.int(b.length)] = rng.pick(INTERESTING_8);
        return b;
      case 3:
        return this.writeInt(b, rng.pick(INTERESTING_16), 2);
      case 4:
        return this.writeInt(b, rng.pick(INTERESTING_32), 4);
      case 5: {
        const i = rng.int(b.length);
        b[i] = (b[i]! + rng.range(-35, 35)) & 0xff;
        return b;
      }
      case 6: {
        // Delete a range.
        const at = rng.int(b.length);
        const len = 1 + rng.int(Math.min(b.length - at, 16));
        return Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
      }
      case 7: {
        // Insert random bytes.
        const at = rng.int(b.length + 1);
        const ins = Buffer.alloc(1 + rng.int(8));
        for (let i = 0; i < ins.length; i++) ins[i] = rng.chance(0.5) ? rng.int(256) : 0;
        return Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
      }
      case 8: {
        // Duplicate a range of itself somewhere.
        const from = rng.int(b.length);
        const len = 1 + rng.int(Math.min(b.length - from, 64));
        const at = rng.int(b.length + 1);
        return Buffer.concat([b.subarray(0, at), Buffer.from(b.subarray(from, from + len)), b.subarray(at)]);
      }
      case 9: {
        // Copy a range over another place.
        const from = rng.int(b.length);
        const to = rng.int(b.length);
        const len = 1 + rng.int(Math.min(b.length - from, b.length - to, 32));
        Buffer.from(b.subarray(from, from + len)).copy(b, to);
        return b;
      }
      case 10: {
        // Splice: a prefix of this one and a suffix of another entry.
        if (!other || other.length === 0) return b;
        const cut = rng.int(b.length + 1);
        const from = rng.int(other.length);
        return Buffer.concat([b.subarray(0, cut), other.subarray(from)]);
      }
      case 11:
        // Truncate.
        return b.subarray(0, rng.int(b.length + 1));
      case 12: {
        // Insert a dictionary token.
        const tok = rng.pick(this.dictionary);
        const at = rng.int(b.length + 1);
        return Buffer.concat([b.subarray(0, at), tok, b.subarray(at)]);
      }
      default: {
        // Write a dictionary token over the bytes.
        const tok = rng.pick(this.dictionary);
        const at = rng.int(b.length + 1);
        const out = at + tok.length > b.length ? Buffer.concat([b, Buffer.alloc(at + tok.length - b.length)]) : b;
        tok.copy(out, at);
        return out;
      }
    }
  }

  private writeInt(b: Buffer, v: number, bytes: 2 | 4): Buffer {
    if (b.length < bytes) return b;
    const at = this.rng.int(b.length - bytes + 1);
    const be = this.rng.chance(0.5);
    if (bytes === 2) {
      if (be) b.writeUInt16BE(v & 0xffff, at);
      else b.writeUInt16LE(v & 0xffff, at);
    } else if (be) b.writeUInt32BE(v >>> 0, at);
    else b.writeUInt32LE(v >>> 0, at);
    return b;
  }
}

/** Tokens of the literals in the target's own source, as AFL++'s autodictionary collects the
 *  constants a program compares with: numbers as 1 byte (below 256) or as 2/4-byte big and little
 *  endian, short strings as their UTF-8 bytes. Sorted and capped: a run stays deterministic. */
export function autoDictionary(sources: readonly string[], tokensMax = AUTO_TOKENS_MAX): Buffer[] {
  const seen = new Map<string, Buffer>();
  const add = (b: Buffer): void => {
    if (b.length > 0 && !seen.has(b.toString('hex'))) seen.set(b.toString('hex'), b);
  };
  for (const src of sources) {
    for (const m of src.matchAll(/\b(0x[0-9a-fA-F]+|[0-9]+)\b/g)) {
      const v = Number(m[1]);
      if (!Number.isInteger(v) || v < 2 || v > 0xffffffff) continue;
      if (v < 256) add(Buffer.from([v]));
      else if (v < 65536) {
        const b = Buffer.alloc(2);
        b.writeUInt16BE(v);
        add(b);
        add(Buffer.from(b).reverse());
      } else {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(v);
        add(b);
        add(Buffer.from(b).reverse());
      }
    }
    for (const m of src.matchAll(/'([^'\\\n]{2,16})'|"([^"\\\n]{2,16})"/g)) add(Buffer.from(m[1] ?? m[2]!, 'utf8'));
  }
  return [...seen.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).slice(0, tokensMax).map(([, b]) => b);
}

/** Tokens an autodictionary keeps at most. */
const AUTO_TOKENS_MAX = 512;

/** Where the engine reports while it runs (the worker posts these to the main thread). */
export interface FuzzSink {
  /** The input about to run (the hang watchdog keeps a copy). */
  starting(input: Buffer): void;
  finished(): void;
  newEntry(input: Buffer): void;
  finding(f: Finding): void;
}

export interface FuzzOptions {
  readonly seed: number;
  /** Mutated inputs to run after the seeds (a bound; `seconds` may end the run sooner). */
  readonly inputsMax: number;
  readonly seconds: number;
  /** Without coverage feedback (the control in the self-test): nothing joins the corpus. */
  readonly blind?: boolean;
  readonly allocationBytesMax?: number;
  /** End the run at the first finding (the self-test). */
  readonly stopOnFinding?: boolean;
}

/** A finding's identity: its kind, error name and message shape, and the first stack frame. */
export function signatureOf(err: unknown): { signature: string; message: string; stack?: string } {
  if (!(err instanceof Error)) return { signature: `non-error ${typeof err}`, message: String(err) };
  const frames = (err.stack ?? '').split('\n').filter((l) => l.trim().startsWith('at '));
  const frame = frames.find((l) => !l.includes('node:internal') && !l.includes('test/fuzz/engine.js')) ?? frames[0] ?? '';
  // Numbers vary from input to input; the shape of the message does not.
  return { signature: `${err.name}: ${err.message.replace(/\d+/g, 'N').slice(0, 120)} ${frame.trim()}`, message: err.message, stack: err.stack };
}

/** Thrown (into the target) for an allocation above the bound: the target cannot declare it. */
export class AllocationTooLarge extends Error {
  override name = 'AllocationTooLarge';
}

/** Buffer's allocators, refusing allocations above `bytesMax` while `armed`. */
function guardAllocations(bytesMax: number): { armed: boolean } {
  const guard = { armed: false };
  const wrap = <F extends (size: number, ...rest: never[]) => Buffer>(orig: F): F =>
    function (this: unknown, size: number, ...rest: never[]): Buffer {
      if (guard.armed && size > bytesMax) throw new AllocationTooLarge(`allocation of ${size} bytes (bound ${bytesMax})`);
      return orig.call(this, size, ...rest);
    } as F;
  Buffer.alloc = wrap(Buffer.alloc);
  Buffer.allocUnsafe = wrap(Buffer.allocUnsafe);
  Buffer.allocUnsafeSlow = wrap(Buffer.allocUnsafeSlow);
  return guard;
}

let allocationGuard: { armed: boolean } | undefined;

/** Runs one input outside the loop (the minimizer): the signature of what it throws that the
 *  target does not declare (an allocation above the bound included), or undefined. */
export async function findingOf(target: FuzzTarget, input: Buffer, allocationBytesMax = ALLOCATION_BYTES_MAX_DEFAULT): Promise<string | undefined> {
  allocationGuard ??= guardAllocations(allocationBytesMax);
  allocationGuard.armed = true;
  try {
    await target.run(input);
    return undefined;
  } catch (err) {
    return err instanceof AllocationTooLarge || !target.declared(err) ? signatureOf(err).signature : undefined;
  } finally {
    allocationGuard.armed = false;
  }
}

/**
 * Shrinks a finding's input while it still fails with the same signature: ranges removed, from
 * halves down to single bytes, then ranges zeroed (which keeps the offsets of formats laid out in
 * pages). At most `runsMax` runs.
 */
export async function minimize(target: FuzzTarget, input: Buffer, runsMax: number): Promise<Buffer> {
  const want = await findingOf(target, input);
  if (want === undefined) throw new Error('the input does not fail: nothing to minimize');
  let best = Buffer.from(input);
  let runs = 0;
  const same = async (b: Buffer): Promise<boolean> => {
    runs++;
    return (await findingOf(target, b)) === want;
  };
  for (let chunk = best.length >> 1; chunk >= 1 && runs < runsMax; chunk >>= 1) {
    for (let at = 0; at + chunk <= best.length && runs < runsMax; ) {
      const cand = Buffer.concat([best.subarray(0, at), best.subarray(at + chunk)]);
      if (await same(cand)) best = cand;
      else at += chunk;
    }
  }
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1 && runs < runsMax; chunk >>= 1) {
    for (let at = 0; at < best.length && runs < runsMax; at += chunk) {
      const end = Math.min(best.length, at + chunk);
      if (best.subarray(at, end).every((x) => x === 0)) continue;
      const cand = Buffer.from(best);
      cand.fill(0, at, end);
      if (await same(cand)) best = cand;
    }
  }
  return best;
}

/**
 * The fuzzing loop: runs the seeds, then mutated inputs until `inputsMax` or `seconds`. Coverage
 * must have been started (BlockCoverage.start) before the target's modules were loaded.
 */
export async function fuzz(target: FuzzTarget, coverage: BlockCoverage, seeds: readonly Buffer[], opts: FuzzOptions, sink: FuzzSink, autoTokens: readonly Buffer[] = []): Promise<FuzzStats> {
  const rng = new Rng(opts.seed);
  const bytesMax = target.inputBytesMax ?? INPUT_BYTES_MAX_DEFAULT;
  const mutator = new Mutator(rng, [...(target.dictionary ?? []), ...autoTokens], bytesMax);
  allocationGuard ??= guardAllocations(opts.allocationBytesMax ?? ALLOCATION_BYTES_MAX_DEFAULT);
  const guard = allocationGuard;
  const signatures = new Set<string>();
  const corpus: Buffer[] = [];
  let inputs = 0;

  const runOne = async (input: Buffer): Promise<void> => {
    sink.starting(input);
    guard.armed = true;
    let failure: unknown;
    let failed = false;
    try {
      await target.run(input);
    } catch (err) {
      failure = err;
      failed = true;
    } finally {
      guard.armed = false;
      sink.finished();
    }
    if (failed && (failure instanceof AllocationTooLarge || !target.declared(failure))) {
      const sig = signatureOf(failure);
      if (!signatures.has(sig.signature) && signatures.size < FINDINGS_MAX) {
        signatures.add(sig.signature);
        sink.finding({ kind: failure instanceof AllocationTooLarge ? 'allocation' : 'error', ...sig, input: Buffer.from(input), afterInputs: inputs });
      }
    }
  };

  coverage.take(false); // what setup ran is not an input's
  for (const s of seeds) {
    const input = s.length > bytesMax ? s.subarray(0, bytesMax) : s;
    await runOne(input);
    coverage.take(true);
    corpus.push(input);
  }
  if (corpus.length === 0) corpus.push(Buffer.alloc(0));
  const blocksAfterSeeds = coverage.blocks.size;

  const started = process.hrtime.bigint();
  const deadlineNs = started + BigInt(Math.round(opts.seconds * 1e9));
  let newEntries = 0;
  while (inputs < opts.inputsMax && process.hrtime.bigint() < deadlineNs && !(opts.stopOnFinding && signatures.size > 0)) {
    // Newer entries are picked more often: they are where coverage last grew.
    const i = rng.chance(0.5) ? corpus.length - 1 - rng.int(Math.min(corpus.length, 8)) : rng.int(corpus.length);
    const input = mutator.mutate(corpus[i]!, corpus.length > 1 ? rng.pick(corpus) : undefined);
    await runOne(input);
    inputs++;
    const got = coverage.take(!opts.blind);
    if (!opts.blind && got.newFeatures > 0) {
      corpus.push(input);
      newEntries++;
      sink.newEntry(input);
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    inputs,
    seconds,
    inputsPerSecond: seconds > 0 ? inputs / seconds : 0,
    blocksAfterSeeds,
    blocks: coverage.blocks.size,
    corpusEntries: corpus.length,
    newEntries,
  };
}
