// The main thread's side of a fuzzing run: starts the loop in a worker (worker.ts), watches it for
// an input that runs too long (a synchronous hang cannot be seen from inside), bounds its heap,
// and collects its new corpus entries, findings and statistics.
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Finding, FuzzOptions, FuzzStats } from './engine';

/** The committed corpus: test/fuzz/corpus/<target>/ in the source tree. */
export const CORPUS_DIR = path.join(__dirname, '..', '..', '..', 'test', 'fuzz', 'corpus');
/** The module of the real targets (compiled). */
export const TARGETS_MODULE = path.join(__dirname, 'targets.js');
const WORKER_FILE = path.join(__dirname, 'worker.js');
/** How often the watchdog looks at the running input. */
const WATCHDOG_MS = 50;
/** The worker's heap: past it, the worker dies (a 'crash' finding naming the last input). */
const HEAP_MB_MAX = 512;
/** Bytes of the running input the watchdog can recover (inputs are at most this long). */
const SHARED_INPUT_BYTES_MAX = 1024 * 1024;

export interface WorkerInput extends FuzzOptions {
  /** Absolute path of the compiled module exporting TARGETS: Record<string, () => FuzzTarget>. */
  readonly module: string;
  readonly target: string;
  readonly seeds: Uint8Array[];
  /** Shared with the watchdog: [running, inputBytes] as Int32, the start time (ms) as Float64 at
   *  byte 8, then the input. */
  readonly shared: SharedArrayBuffer;
}

export const SHARED_HEADER_BYTES = 16;

export interface RunOptions extends FuzzOptions {
  readonly target: string;
  readonly module?: string;
  /** Seed inputs; by default the files of CORPUS_DIR/<target>. */
  readonly seeds?: readonly Buffer[];
  /** An input running longer than this is a 'hang' finding and ends the run. */
  readonly inputMsMax: number;
  /** Each input that grew coverage, as it is found. */
  readonly onEntry?: (input: Buffer) => void;
  /** Each finding, as it is found. */
  readonly onFinding?: (f: Finding) => void;
}

export interface RunResult {
  /** Absent when the worker did not finish (a hang or a crash is among the findings). */
  readonly stats?: FuzzStats;
  readonly findings: Finding[];
}

/** The files of a target's committed corpus, sorted by name (a run is deterministic). */
export function corpusOf(target: string, dir = CORPUS_DIR): Buffer[] {
  const d = path.join(dir, target);
  if (!fs.existsSync(d)) return [];
  return fs
    .readdirSync(d)
    .sort()
    .map((f) => fs.readFileSync(path.join(d, f)));
}

export function runFuzz(opts: RunOptions): Promise<RunResult> {
  const shared = new SharedArrayBuffer(SHARED_HEADER_BYTES + SHARED_INPUT_BYTES_MAX);
  const ctrl = new Int32Array(shared, 0, 2);
  const started = new Float64Array(shared, 8, 1);
  const bytes = new Uint8Array(shared, SHARED_HEADER_BYTES);
  const running = (): Buffer => Buffer.from(bytes.subarray(0, Atomics.load(ctrl, 1)));
  const data: WorkerInput = {
    seed: opts.seed,
    inputsMax: opts.inputsMax,
    seconds: opts.seconds,
    blind: opts.blind,
    allocationBytesMax: opts.allocationBytesMax,
    stopOnFinding: opts.stopOnFinding,
    module: opts.module ?? TARGETS_MODULE,
    target: opts.target,
    seeds: (opts.seeds ?? corpusOf(opts.target)).map((b) => new Uint8Array(b)),
    shared,
  };
  const worker = new Worker(WORKER_FILE, { workerData: data, resourceLimits: { maxOldGenerationSizeMb: HEAP_MB_MAX }, stdout: false, stderr: false });
  const findings: Finding[] = [];
  const found = (f: Finding): void => {
    findings.push(f);
    opts.onFinding?.(f);
  };
  return new Promise((resolve) => {
    let stats: FuzzStats | undefined;
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      resolve({ stats, findings });
    };
    const watchdog = setInterval(() => {
      if (Atomics.load(ctrl, 0) !== 1) return;
      const ms = Date.now() - started[0]!;
      if (ms <= opts.inputMsMax) return;
      const input = running();
      found({ kind: 'hang', signature: 'hang', message: `an input ran for more than ${opts.inputMsMax} ms`, input, afterInputs: -1 });
      void worker.terminate().then(finish);
    }, WATCHDOG_MS);
    worker.on('message', (m: { type: string; input?: Uint8Array; finding?: Finding; stats?: FuzzStats }) => {
      if (m.type === 'entry') opts.onEntry?.(Buffer.from(m.input!));
      else if (m.type === 'finding') found({ ...m.finding!, input: Buffer.from(m.finding!.input) });
      else if (m.type === 'done') stats = m.stats;
    });
    worker.on('error', (err) => {
      const input = running();
      found({ kind: 'crash', signature: `crash ${err.name}: ${err.message.slice(0, 120)}`, message: err.message, stack: err.stack, input, afterInputs: -1 });
    });
    worker.on('exit', finish);
  });
}
