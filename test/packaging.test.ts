// Packaging: declare what you import, import what you declare. Every bare import in src/ is a
// runtime dependency; every bare import in test/ and scripts/ is a dependency or a dev dependency;
// every declared dependency is imported somewhere (or is a tool the npm scripts run).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { builtinModules } from 'node:module';
import { REPO_ROOT } from './integration/harness';

const BARE = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+'([^.'][^']*)'|import\(\s*'([^.'][^']*)'\s*\)|require\(\s*'([^.'][^']*)'\s*\)/g;

function files(dir: string, out: string[] = []): string[] {
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name);
    if (fs.statSync(p).isDirectory()) files(p, out);
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The package a bare specifier names: '@scope/name/sub' -> '@scope/name', 'name/sub' -> 'name'. */
export function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

function importedPackages(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of files(dir)) {
    for (const m of fs.readFileSync(file, 'utf8').matchAll(BARE)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      if (spec.startsWith('node:') || builtinModules.includes(packageOf(spec))) continue;
      if (!out.has(packageOf(spec))) out.set(packageOf(spec), path.relative(REPO_ROOT, file));
    }
  }
  return out;
}

describe('packaging: declared dependencies match imports', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
    scripts: Record<string, string>;
  };
  const deps = new Set(Object.keys(pkg.dependencies));
  const devDeps = new Set(Object.keys(pkg.devDependencies));
  const src = importedPackages(path.join(REPO_ROOT, 'src'));
  const rest = new Map([...importedPackages(path.join(REPO_ROOT, 'test')), ...importedPackages(path.join(REPO_ROOT, 'scripts'))]);

  it('src/ imports only runtime dependencies', () => {
    const undeclared = [...src].filter(([p]) => !deps.has(p)).map(([p, f]) => `${p} (${f})`);
    assert.deepEqual(undeclared, []);
  });

  it('test/ and scripts/ import only declared packages', () => {
    const undeclared = [...rest].filter(([p]) => !deps.has(p) && !devDeps.has(p)).map(([p, f]) => `${p} (${f})`);
    assert.deepEqual(undeclared, []);
  });

  it('every declared package is used: imported, or a tool the npm scripts or the lint config run', () => {
    const config = fs.readFileSync(path.join(REPO_ROOT, 'eslint.config.mjs'), 'utf8');
    const scripts = Object.values(pkg.scripts).join(' ');
    const tools: Record<string, string> = { typescript: 'tsc', mocha: 'mocha', eslint: 'eslint' };
    const unused = [...deps, ...devDeps].filter((p) => {
      if (src.has(p) || rest.has(p)) return false;
      if (p.startsWith('@types/')) return false; // types of an imported package or of Node
      if (config.includes(`'${p}'`)) return false;
      const bin = tools[p];
      return !(bin && (scripts.includes(bin) || fs.readFileSync(path.join(REPO_ROOT, 'scripts', 'run-tests.js'), 'utf8').includes(bin)));
    });
    assert.deepEqual(unused, []);
  });

  it('the check sees a bare import', () => {
    assert.equal(packageOf('@grpc/grpc-js/build/src/x'), '@grpc/grpc-js');
    assert.equal(packageOf('level'), 'level');
    assert.ok(src.has('level') && src.has('@grpc/grpc-js'));
  });
});
