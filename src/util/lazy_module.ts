// Modules loaded on their first use instead of at start. A member's start pays for every module
// it loads (the restart of a killed member spent seconds there under load: docs/performance.md
// "start"), so a package needed only by an optional feature (a --config-file's YAML, JWT auth
// tokens) is required the first time that feature runs. The loading is synchronous, as a
// top-level import is: the first use pays a few tens of ms once.

/** A function returning what `load` returns (a `require` of the package, written at the call site
 *  so that the dependency shows there), calling it only the first time. */
export function lazyModule<T>(load: () => T): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= load());
}
