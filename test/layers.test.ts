// The layer rule of docs/architecture.md, checked mechanically: a folder of src/ imports only from
// folders below it (type-only imports included: a type is a dependency too). A new folder, or an
// import that points upward or sideways, fails here with the offending file named.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './integration/harness';

/** Each folder of src/ and its rank: imports must go to a strictly lower rank. */
export const LAYERS: Readonly<Record<string, number>> = {
  util: 0,
  linearizability: 1,
  proto: 1,
  tls: 1,
  config: 2,
  raft: 2,
  mvcc: 2,
  grpcserver: 2,
  storage: 3,
  lease: 3,
  auth: 3,
  transport: 3,
  server: 4,
  api: 5,
  http: 6,
  embed: 7,
  cli: 8,
};

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)|require\(\s*'(\.[^']+)'\s*\)/g;

function sources(dir: string, out: string[] = []): string[] {
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name);
    if (fs.statSync(p).isDirectory()) sources(p, out);
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** [importing file, imported folder] for every import that crosses a folder of src/. */
export function crossFolderImports(srcDir: string): { file: string; from: string; to: string }[] {
  const out: { file: string; from: string; to: string }[] = [];
  for (const file of sources(srcDir)) {
    const from = path.relative(srcDir, file).split(path.sep)[0]!;
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      const target = path.relative(srcDir, path.resolve(path.dirname(file), spec));
      const to = target.split(path.sep)[0]!;
      if (to !== from) out.push({ file: path.relative(REPO_ROOT, file), from, to });
    }
  }
  return out;
}

describe('layers: imports point downward', () => {
  const srcDir = path.join(REPO_ROOT, 'src');

  it('every folder of src/ has a rank (docs/architecture.md lists them)', () => {
    const folders = fs.readdirSync(srcDir).filter((n) => fs.statSync(path.join(srcDir, n)).isDirectory());
    assert.deepEqual(folders.filter((f) => !(f in LAYERS)), [], 'a folder without a rank: add it to LAYERS and to docs/architecture.md');
  });

  it('no import goes to the same rank or above', () => {
    const bad = crossFolderImports(srcDir).filter((e) => !(LAYERS[e.to]! < LAYERS[e.from]!));
    assert.deepEqual(bad.map((e) => `${e.file}: ${e.from} -> ${e.to}`), []);
  });

  it('the check sees imports (it would catch an upward one)', () => {
    const edges = crossFolderImports(srcDir);
    assert.ok(edges.some((e) => e.from === 'embed' && e.to === 'api'), 'embed wires the api services');
    assert.ok(edges.some((e) => e.from === 'server' && e.to === 'raft'), 'server drives raft');
    assert.ok(!(LAYERS.api! < LAYERS.server!), 'an api import from server would be refused');
  });
});
