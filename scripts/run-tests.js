#!/usr/bin/env node
// Runs the whole test suite (compiled test files under dist/test) with mocha's spec reporter and
// ends with the one summary line CI reads: "N passed, N failed".
// Usage: node scripts/run-tests.js [substring-filter-on-file-path ...]
'use strict';
const path = require('path');
const fs = require('fs');
const Mocha = require('mocha');

const root = path.join(__dirname, '..', 'dist', 'test');
function collect(dir, out) {
  if (!fs.existsSync(dir)) return out;
  for (const name of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (fs.statSync(p).isDirectory()) collect(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = collect(root, []).filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
const mocha = new Mocha({ reporter: 'spec', timeout: 60_000, slow: 5_000 });
for (const f of files) mocha.addFile(f);

let passed = 0;
let failed = 0;
const runner = mocha.run((failures) => {
  // mocha counts a failing hook as a failure too; report what actually happened.
  failed = Math.max(failed, failures);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;
  // Open handles (sockets of a failed test) must not keep CI waiting.
  setTimeout(() => process.exit(process.exitCode), 2000).unref();
});
runner.on('pass', () => passed++);
runner.on('fail', () => failed++);
