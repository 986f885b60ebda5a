// src/raft's modules import each other as a DAG: a reader can start at the leaves (types, log,
// tracker) and read upwards, and no module needs another that needs it back. Type-only imports
// count too: a type cycle is still a cycle for a reader. The folder imports nothing of ours but
// ../util (docs/raft.md; the architecture's "nothing of ours but small shared utilities").

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.join(__dirname, '..', '..', '..', 'src', 'raft');

/** Module specifiers of every import / export-from / require in a TypeScript source. */
export function importSpecifiers(text: string): string[] {
  // Comments may mention imports; strip them first (block comments, then line comments).
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"])\/\/.*$/gm, '$1');
  const out: string[] = [];
  const patterns = [
    /\bimport\s+(?:type\s+)?(?:[\w*{}\s,]+?\s+from\s+)?['"]([^'"]+)['"]/g,
    /\bexport\s+(?:type\s+)?(?:\*|\{[^}]*\})\s*(?:as\s+\w+\s+)?from\s+['"]([^'"]+)['"]/g,
    /\b(?:require|import)\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) out.push(m[1]!);
  return out;
}

/** The first cycle found in a graph (as a path that starts and ends at the same node), or undefined. */
export function findCycle(graph: ReadonlyMap<string, readonly string[]>): string[] | undefined {
  const WHITE = 0;
  const GREY = 1;
  const BLACK = 2;
  const color = new Map<string, number>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    color.set(n, GREY);
    stack.push(n);
    for (const next of graph.get(n) ?? []) {
      const c = color.get(next) ?? WHITE;
      if (c === GREY) return [...stack.slice(stack.indexOf(next)), next];
      if (c === WHITE) {
        const found = visit(next);
        if (found !== undefined) return found;
      }
    }
    stack.pop();
    color.set(n, BLACK);
    return undefined;
  };
  for (const n of [...graph.keys()].sort()) {
    if ((color.get(n) ?? WHITE) !== WHITE) continue;
    const found = visit(n);
    if (found !== undefined) return found;
  }
  return undefined;
}

function raftImportGraph(): { graph: Map<string, string[]>; outside: string[] } {
  const files = fs.readdirSync(root).filter((f) => f.endsWith('.ts'));
  const graph = new Map<string, string[]>();
  const outside: string[] = [];
  for (const f of files) {
    const mod = f.replace(/\.ts$/, '');
    const deps: string[] = [];
    for (const spec of importSpecifiers(fs.readFileSync(path.join(root, f), 'utf8'))) {
      if (spec.startsWith('./')) deps.push(spec.slice(2).replace(/\.(js|ts)$/, ''));
      else if (!spec.startsWith('../util/') && !spec.startsWith('node:')) outside.push(`${f} imports ${spec}`);
    }
    graph.set(mod, deps);
  }
  return { graph, outside };
}

describe('src/raft import graph', () => {
  it('the modules of src/raft import each other without a cycle (type-only imports included)', () => {
    const { graph } = raftImportGraph();
    assert.ok(graph.size >= 15, `expected the raft sources in ${root}`);
    assert.ok((graph.get('raft') ?? []).includes('step_leader'), 'parser sanity: raft.ts imports step_leader.ts');
    for (const [mod, deps] of graph) for (const d of deps) assert.ok(graph.has(d), `${mod} imports ./${d}, which does not exist`);
    const cycle = findCycle(graph);
    assert.equal(cycle, undefined, `import cycle: ${(cycle ?? []).join(' -> ')}`);
  });

  it('src/raft imports nothing of ours outside the folder but ../util', () => {
    assert.deepEqual(raftImportGraph().outside, []);
  });

  it('the checker itself sees type-only imports and reports a cycle', () => {
    const specs = importSpecifiers(
      [
        "import type { A } from './a';",
        "import { b,\n  c } from './b';",
        "export { d } from './d';",
        "export * from './e';",
        "// import { x } from './commented';",
        "import './side_effect';",
      ].join('\n'),
    );
    assert.deepEqual(specs.sort(), ['./a', './b', './d', './e', './side_effect']);
    const g = new Map([
      ['raft', ['step_leader', 'log']],
      ['step_leader', ['replicate']],
      ['replicate', ['raft']],
      ['log', []],
    ]);
    assert.deepEqual(findCycle(g), ['raft', 'step_leader', 'replicate', 'raft']);
    g.set('replicate', ['log']);
    assert.equal(findCycle(g), undefined);
  });
});
