// src/raft must be a pure state machine: no clock, no ambient randomness, no timers, no filesystem.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.join(__dirname, '..', '..', '..', 'src', 'raft');
const forbidden: [RegExp, string][] = [
  [/Date\.now/, 'Date.now'],
  [/new Date\(/, 'new Date('],
  [/Math\.random/, 'Math.random'],
  [/setTimeout|setInterval|setImmediate/, 'timers'],
  [/performance\.now|process\.hrtime/, 'clocks'],
  [/require\(\s*['"](node:)?fs['"]\s*\)|from\s+['"](node:)?fs(\/promises)?['"]/, 'fs'],
];

describe('src/raft purity', () => {
  it('no file in src/raft uses Date.now, Math.random, timers or fs', () => {
    const files = fs.readdirSync(root).filter((f) => f.endsWith('.ts'));
    assert.ok(files.length >= 10, `expected raft sources in ${root}`);
    const hits: string[] = [];
    for (const f of files) {
      const text = fs.readFileSync(path.join(root, f), 'utf8');
      for (const [re, name] of forbidden) if (re.test(text)) hits.push(`${f}: ${name}`);
    }
    assert.deepEqual(hits, []);
  });
});
