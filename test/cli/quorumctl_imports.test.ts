// quorumctl is a client: no file under src/cli/quorumctl* may import, even through other files or
// for types only, the server's code (src/server, src/api, src/embed, src/raft, src/mvcc). Its
// `snapshot restore` runs `quorumkv snapshot restore` instead of importing it. The import graph is
// read from the TypeScript sources with the compiler's own pre-processor.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { REPO_ROOT } from '../integration/harness';

const SRC = path.join(REPO_ROOT, 'src');
const SERVER_FOLDERS = ['server', 'api', 'embed', 'raft', 'mvcc'];

/** The .ts file a relative import names, or undefined for a package (or node:) import. */
function resolve(fromFile: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = path.resolve(path.dirname(fromFile), spec);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts')]) if (fs.existsSync(candidate)) return candidate;
  throw new Error(`${path.relative(REPO_ROOT, fromFile)}: cannot resolve import ${JSON.stringify(spec)}`);
}

/** Every source file reachable from `roots`, each with the chain of imports that reached it. */
function reachable(roots: string[]): Map<string, string[]> {
  const chains = new Map<string, string[]>(roots.map((r) => [r, [r]]));
  const queue = [...roots];
  while (queue.length > 0) {
    const file = queue.shift()!;
    const info = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
    for (const ref of info.importedFiles) {
      const target = resolve(file, ref.fileName);
      if (target === undefined || chains.has(target)) continue;
      chains.set(target, [...chains.get(file)!, target]);
      queue.push(target);
    }
  }
  return chains;
}

function serverFilesReached(roots: string[]): string[] {
  const out: string[] = [];
  for (const [file, chain] of reachable(roots)) {
    const folder = path.relative(SRC, file).split(path.sep)[0]!;
    if (SERVER_FOLDERS.includes(folder)) out.push(chain.map((f) => path.relative(REPO_ROOT, f)).join(' → '));
  }
  return out;
}

function quorumctlFiles(): string[] {
  const dir = path.join(SRC, 'cli', 'quorumctl');
  return [path.join(SRC, 'cli', 'quorumctl.ts'), ...fs.readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => path.join(dir, f))];
}

describe('quorumctl imports no server code', () => {
  it('no file under src/cli/quorumctl* reaches src/server, src/api, src/embed, src/raft or src/mvcc', () => {
    const roots = quorumctlFiles();
    assert.ok(roots.length > 5, `found ${roots.length} quorumctl files`);
    const reached = [...reachable(roots).keys()].map((f) => path.relative(SRC, f));
    assert.ok(reached.includes(path.join('storage', 'snapshot_file.ts')), 'the walk follows imports out of src/cli (the shared snapshot file format)');
    assert.deepEqual(serverFilesReached(roots), []);
  });

  it('the check sees server code where there is some (quorumkv\'s snapshot command)', () => {
    const found = serverFilesReached([path.join(SRC, 'cli', 'snapshot.ts')]);
    assert.ok(found.some((chain) => chain.includes(path.join('src', 'server', 'restore.ts'))), found.join('\n'));
  });
});
