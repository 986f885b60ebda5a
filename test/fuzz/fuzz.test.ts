// The short fuzzing run CI does (scripts/fuzz.ts does the long ones): every target from its
// committed corpus (test/fuzz/corpus/<target>/) with a fixed seed and a bounded number of inputs,
// failing on any finding (an error the target's module does not declare, an allocation above the
// bound, an input that runs too long). First, the engine's self-test: a toy parser whose bug sits
// behind a 4-byte magic is found by a guided run and not by the same budget of blind mutations.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Finding } from './engine';
import { CORPUS_DIR, runFuzz } from './run';

const TOY = path.join(__dirname, 'toy.js');
/** The per-target budget: whichever comes first (the file stays within ~60 s on a loaded 2-core
 *  machine). */
const INPUTS_PER_TARGET = 600;
const SECONDS_PER_TARGET = 3;
/** An input of these small parsers that runs longer than this has hung. */
const INPUT_MS_MAX = 5000;

function describeFinding(f: Finding): string {
  return `${f.kind}: ${f.signature}\ninput (hex): ${f.input.toString('hex')}\n${f.stack ?? f.message}`;
}

describe('fuzzing (V8 block coverage, test/fuzz/engine.ts)', function () {
  this.timeout(60_000);

  it('self-test: finds a bug behind a 4-byte magic by coverage growth, which blind mutation does not', async function () {
    // About 2,700 inputs each way; the time bounds only matter on a machine far busier than CI's.
    this.timeout(100_000);
    const seeds = [Buffer.from('AAAA')];
    const guided = await runFuzz({ target: 'toy', module: TOY, seeds, seed: 4, inputsMax: 20_000, seconds: 45, inputMsMax: INPUT_MS_MAX, stopOnFinding: true });
    assert.equal(guided.findings.length, 1, 'the guided run finds the toy bug');
    const bug = guided.findings[0]!;
    assert.equal(bug.kind, 'error');
    assert.match(bug.signature, /^TypeError/);
    assert.equal(bug.input.subarray(0, 4).toString('latin1'), 'FUZZ');
    // Each matched byte was a new block: the corpus grew step by step on the way.
    assert.ok(guided.stats!.blocks > guided.stats!.blocksAfterSeeds + 3, `coverage grew (${guided.stats!.blocksAfterSeeds} → ${guided.stats!.blocks} blocks)`);
    const budget = bug.afterInputs + 1;
    const blind = await runFuzz({ target: 'toy', module: TOY, seeds, seed: 4, inputsMax: budget, seconds: 45, inputMsMax: INPUT_MS_MAX, blind: true });
    assert.equal(blind.findings.length, 0, `blind mutation found it too within ${budget} inputs`);
    assert.equal(blind.stats!.inputs, budget);
  });

  it('self-test: an input that hangs is reported with the input, and the run ends', async () => {
    const r = await runFuzz({ target: 'toy_hang', module: TOY, seeds: [Buffer.from('ok'), Buffer.from('hang')], seed: 1, inputsMax: 10, seconds: 10, inputMsMax: 300 });
    assert.equal(r.stats, undefined);
    assert.equal(r.findings.length, 1);
    assert.equal(r.findings[0]!.kind, 'hang');
    assert.equal(r.findings[0]!.input.toString(), 'hang');
  });

  const targets = fs.readdirSync(CORPUS_DIR).sort();
  it('has a committed corpus for every target', () => {
    assert.deepEqual(targets, ['grpc_framing', 'h2_conn', 'hpack', 'json_gateway', 'protobuf_requests', 'snapshot_file', 'snapshot_stream', 'wal_recovery']);
  });

  for (const target of targets) {
    it(`${target}: no finding in ${INPUTS_PER_TARGET} inputs from its corpus (seed 1)`, async () => {
      const r = await runFuzz({ target, seed: 1, inputsMax: INPUTS_PER_TARGET, seconds: SECONDS_PER_TARGET, inputMsMax: INPUT_MS_MAX });
      assert.deepEqual(r.findings.map(describeFinding), []);
      assert.ok(r.stats, 'the run finished');
      assert.ok(r.stats.inputs > 0);
      assert.ok(r.stats.blocks >= r.stats.blocksAfterSeeds && r.stats.blocksAfterSeeds > 0, 'coverage is measured on the target');
    });
  }
});
