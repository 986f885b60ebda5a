// Golden-trace Raft scenarios (test/raft/testdata/*.txt), in the manner of etcd-io/raft's
// datadriven interaction tests: each file is a script of commands with the expected trace after
// each. See docs/raft.md "Golden traces" and the command list in interaction/commands.ts.
//
//   node scripts/run-tests.js interaction                 # check
//   REWRITE=1 node scripts/run-tests.js interaction       # regenerate, then review `git diff`

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseCommandLine, parseFile, renderFile } from './interaction/datadriven';
import { formatMismatches, lineDiff, runScenario } from './interaction/runner';

// Compiled to dist/test/raft/; the scenarios stay in the source tree (rewrite writes them there).
const TESTDATA = path.join(__dirname, '..', '..', '..', 'test', 'raft', 'testdata');
const REWRITE = process.env['REWRITE'] === '1' || process.argv.includes('--rewrite');

function title(text: string): string {
  const first = text.split('\n').find((l) => l.startsWith('#'));
  return first === undefined ? '' : `: ${first.replace(/^#\s*/, '')}`;
}

describe('raft golden traces (test/raft/testdata)', () => {
  const files = fs.existsSync(TESTDATA) ? fs.readdirSync(TESTDATA).filter((f) => f.endsWith('.txt')).sort() : [];

  it('there are scenarios to run', () => {
    assert.ok(files.length >= 8, `expected scenario files in ${TESTDATA}`);
  });

  for (const f of files) {
    const file = path.join(TESTDATA, f);
    const text = fs.readFileSync(file, 'utf8');
    it(`${f}${title(text)}`, () => {
      const res = runScenario(`test/raft/testdata/${f}`, text);
      if (REWRITE) {
        if (res.rewritten !== text) fs.writeFileSync(file, res.rewritten);
        return;
      }
      assert.ok(res.mismatches.length === 0, formatMismatches(`test/raft/testdata/${f}`, res.mismatches));
    });
  }
});

describe('golden trace runner', () => {
  const script = ['# two nodes elect 1', 'add-nodes 2 voters=(1,2) index=5', '----', 'ok', '', 'campaign 1', '----', 'INFO 1 is starting a new election at term 0', 'INFO 1 became candidate at term 1', ''].join('\n');

  it('passes a script whose expected output matches', () => {
    const res = runScenario('inline', script.replace('ok', 'INFO 1 started as follower at term 0: voters=(1 2) commit=5 applied=5 last=1/5\nINFO 2 started as follower at term 0: voters=(1 2) commit=5 applied=5 last=1/5'));
    assert.deepEqual(res.mismatches, []);
  });

  it('fails, with a diff naming the line, when one expected line differs', () => {
    const res = runScenario('inline', script);
    assert.equal(res.mismatches.length, 1);
    const report = formatMismatches('inline', res.mismatches);
    assert.match(report, /^inline:2: output of 'add-nodes 2 voters=\(1,2\) index=5' differs/);
    assert.match(report, /- ok/);
    assert.match(report, /\+ INFO 1 started as follower at term 0/);
  });

  it('rewrites only the expected outputs, keeping comments and commands', () => {
    const res = runScenario('inline', script);
    const again = runScenario('inline', res.rewritten);
    assert.deepEqual(again.mismatches, []);
    assert.ok(res.rewritten.startsWith('# two nodes elect 1\nadd-nodes 2 voters=(1,2) index=5\n----\nINFO 1 started'));
  });

  it('a file round-trips byte for byte, including outputs with blank lines', () => {
    const text = ['# c', 'a 1', '----', 'x', '', 'b k=(1, 2) z=3', '----', '----', 'y', '', 'z', '----', '----', '', '# end', ''].join('\n');
    const { cases, trailer } = parseFile(text);
    assert.equal(cases.length, 2);
    assert.equal(cases[1]!.expected, 'y\n\nz');
    assert.deepEqual(cases[1]!.args, [
      { key: 'k', vals: ['1', '2'] },
      { key: 'z', vals: ['3'] },
    ]);
    assert.equal(renderFile(cases, [], trailer), text);
    assert.deepEqual(parseCommandLine('deliver-msgs 2 drop=(3)'), { cmd: 'deliver-msgs', args: [{ key: '2', vals: [] }, { key: 'drop', vals: ['3'] }] });
  });

  it('a scenario mistake fails with its file and line', () => {
    assert.throws(() => runScenario('inline', 'add-nodes 1 voters=(1)\n----\nok\n\nfly 1\n----\nok\n'), /inline:5: fly 1: scenario error: .*unknown command fly/);
  });

  it('the line diff shows only changes and their context', () => {
    const a = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10'];
    const b = [...a];
    b[8] = 'nine';
    assert.deepEqual(lineDiff(a, b), ['  ...', '  6', '  7', '  8', '- 9', '+ nine', '  10']);
  });
});
