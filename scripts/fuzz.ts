// Long fuzzing runs (CI runs the short one: test/fuzz/fuzz.test.ts).
//
//   node dist/scripts/fuzz.js --target=hpack --seconds=600 --seed=N [--out=fuzz-out] [--all]
//   node dist/scripts/fuzz.js --target=hpack --minimize=<finding file>   (writes <file>.min)
//
// Starts from the committed corpus (test/fuzz/corpus/<target>/) plus what earlier runs saved in
// <out>/<target>/corpus/, saves each input that grows coverage there, and each finding in
// <out>/<target>/findings/ (the input, and a .txt with the error). A hang or a crashed worker ends
// that worker; the run goes on with the next seed until the time is up. --all runs every target
// for --seconds each. Prints inputs/s and blocks reached. Exit code 1 if anything was found.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { minimize, type Finding } from '../test/fuzz/engine';
import { CORPUS_DIR, corpusOf, runFuzz } from '../test/fuzz/run';

interface Args {
  targets: string[];
  seconds: number;
  seed: number;
  out: string;
}

function parseArgs(argv: readonly string[]): Args {
  const get = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const all = fs.readdirSync(CORPUS_DIR).sort();
  const target = get('target');
  const targets = argv.includes('--all') ? all : target ? [target] : [];
  if (targets.length === 0 || targets.some((t) => !all.includes(t))) {
    throw new Error(`usage: fuzz.js --target=<${all.join('|')}> | --all [--seconds=600] [--seed=1] [--out=fuzz-out]`);
  }
  const seconds = Number(get('seconds') ?? '600');
  const seed = Number(get('seed') ?? '1');
  if (!(seconds > 0) || !Number.isSafeInteger(seed)) throw new Error('--seconds must be > 0 and --seed an integer');
  return { targets, seconds, seed, out: path.resolve(get('out') ?? 'fuzz-out') };
}

const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex');

async function fuzzTarget(target: string, args: Args): Promise<number> {
  const corpusOut = path.join(args.out, target, 'corpus');
  const findingsOut = path.join(args.out, target, 'findings');
  fs.mkdirSync(corpusOut, { recursive: true });
  fs.mkdirSync(findingsOut, { recursive: true });
  const saveFinding = (f: Finding): void => {
    const name = `${f.kind}-${sha1(f.input).slice(0, 16)}`;
    fs.writeFileSync(path.join(findingsOut, name), f.input);
    fs.writeFileSync(path.join(findingsOut, `${name}.txt`), `${f.signature}\n\n${f.stack ?? f.message}\n`);
    console.log(`${target}: FINDING ${f.kind} ${f.signature} -> ${path.join(findingsOut, name)}`);
  };
  const deadline = Date.now() + args.seconds * 1000;
  let seed = args.seed;
  let inputs = 0;
  let runSeconds = 0;
  let found = 0;
  let first: number | undefined;
  let last = 0;
  // A worker ended by a hang or crash is replaced by one with the next seed (bounded: one per
  // second of the run at most).
  for (let round = 0; round < args.seconds && Date.now() < deadline - 1000; round++, seed++) {
    const seeds = corpusOf(target);
    const saved = fs.readdirSync(corpusOut).sort().map((f) => fs.readFileSync(path.join(corpusOut, f)));
    const r = await runFuzz({
      target,
      seed,
      inputsMax: Number.MAX_SAFE_INTEGER,
      seconds: (deadline - Date.now()) / 1000,
      inputMsMax: 10_000,
      seeds: [...seeds, ...saved],
      onEntry: (b) => fs.writeFileSync(path.join(corpusOut, sha1(b)), b),
      onFinding: (f) => {
        found++;
        saveFinding(f);
      },
    });
    if (r.stats) {
      inputs += r.stats.inputs;
      runSeconds += r.stats.seconds;
      first ??= r.stats.blocksAfterSeeds;
      last = r.stats.blocks;
      console.log(
        `${target}: seed ${seed}: ${r.stats.inputs} inputs in ${r.stats.seconds.toFixed(1)} s (${r.stats.inputsPerSecond.toFixed(0)}/s), blocks ${r.stats.blocksAfterSeeds} -> ${r.stats.blocks}, corpus ${r.stats.corpusEntries} (+${r.stats.newEntries})`,
      );
    }
  }
  console.log(`${target}: total ${inputs} inputs, ${(inputs / Math.max(runSeconds, 1e-9)).toFixed(0)}/s, blocks ${first ?? 0} -> ${last}, findings ${found}`);
  return found;
}

/** Runs the minimizer in this process (no coverage needed) on a finding's input. */
async function minimizeFile(target: string, file: string): Promise<void> {
  const { TARGETS } = await import('../test/fuzz/targets');
  const t = await TARGETS[target]!();
  const input = fs.readFileSync(file);
  const min = await minimize(t, input, MINIMIZE_RUNS_MAX);
  fs.writeFileSync(`${file}.min`, min);
  const nonZero = min.filter((b) => b !== 0).length;
  console.log(`${target}: ${input.length} bytes -> ${min.length} bytes (${nonZero} non-zero): ${file}.min`);
}

/** Runs of the minimizer per input. */
const MINIMIZE_RUNS_MAX = 20_000;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const toMinimize = process.argv.find((a) => a.startsWith('--minimize='))?.slice('--minimize='.length);
  if (toMinimize !== undefined) return minimizeFile(args.targets[0]!, toMinimize);
  let found = 0;
  for (const t of args.targets) found += await fuzzTarget(t, args);
  process.exitCode = found > 0 ? 1 : 0;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(2);
});
