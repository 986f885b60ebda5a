// V8 tiering for a member: how soon a freshly started process serves at full speed (issue 20).
import v8 from 'node:v8';

/**
 * A fresh member runs its request path in V8's interpreter (Ignition) until the path has run long
 * enough to be compiled: to Sparkplug, V8's baseline compiler, once a function has a feedback vector
 * and its batch of baseline compiles is full, and to TurboFan much later. With `--always-sparkplug`
 * every function gets baseline code when it is first compiled, so the cold path skips the
 * interpreter; TurboFan tiers up as before. Sparkplug compiles straight from bytecode in one pass
 * (no optimization), so the extra compile cost is small. Measured with
 * `scripts/bench-cold-start.sh --windows` (docs/performance.md, "Cold start: V8 tiering"): on fresh
 * 3-member clusters, put by 100 clients served about twice the requests in its first 5 seconds at a
 * third less member CPU per request, with the steady rate unchanged (single-client puts: no change
 * measurable). Other tiering flags measured and not used: the same section.
 *
 * V8 reads the flag when it compiles a function, so setting it at run time, before the member is
 * built, covers the request path (everything but the module-loading code already compiled). An
 * operator who passes `--always-sparkplug` or `--no-always-sparkplug` on node's command line keeps
 * their choice (node refuses V8 flags in NODE_OPTIONS).
 */
const JIT_FLAGS = ['--always-sparkplug'];

/** The V8 flags configureJit sets, given node's `execArgv`: none the operator already chose. */
export function jitFlags(execArgv: readonly string[]): string[] {
  const name = (flag: string) => flag.replace(/^--(no-)?/, '').replace(/=.*$/, '').replace(/_/g, '-');
  const chosen = new Set(execArgv.filter((a) => a.startsWith('--')).map(name));
  return JIT_FLAGS.filter((f) => !chosen.has(name(f)));
}

/** Sets the member's V8 tiering flags (see above); call once, first thing at start-up. */
export function configureJit(): void {
  for (const flag of jitFlags(process.execArgv)) v8.setFlagsFromString(flag);
}
