// Modules loaded on their first use instead of at start. A member's start pays for every module
// it loads (the restart of a killed member spent seconds there under load: docs/performance.md
// "start"), so a package needed only by an optional feature (a --config-file's YAML, JWT auth
// tokens) is required the first time that feature runs. The loading is synchronous, as a
// top-level import is: the first use pays a few tens of ms once.
import { createRequire } from 'node:module';

const requireFromHere = createRequire(__filename);

/** A function returning package `name`'s exports, loading them on its first call. The caller
 *  gives their type as the package's `typeof import(...)`, which also declares the dependency
 *  (test/packaging.test.ts reads it). */
export function lazyModule<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= requireFromHere(name) as T);
}
