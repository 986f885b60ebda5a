#!/usr/bin/env node
// The quorumkv server. Flags follow etcd's names (see docs/operations.md).
import { ConfigError, parseServerFlags } from '../config/flags';
import { Logger } from '../util/log';
import { startMember } from '../embed/member';
import { configureHeap } from '../util/v8_heap';
import { configureJit } from '../util/v8_jit';

const REMOVED_STOP_DELAY_MS = 3000;
/** A stop that has not finished after this long ends the process anyway (issue 22: graceful
 *  shutdown completes within a bound under any load). */
const SHUTDOWN_MS_MAX = 10_000;
const VERSION = '3.4.0-quorumkv.0.1.0';

async function main(): Promise<void> {
  // First: V8 applies it to the functions compiled from here on (the whole request path).
  configureJit();
  const argv = process.argv.slice(2);
  if (argv[0] === 'snapshot') {
    const { snapshotMain } = await import('./snapshot');
    process.exitCode = await snapshotMain(argv.slice(1));
    return;
  }
  if (argv.includes('--version') || argv.includes('-version')) {
    console.log(`quorumkv Version: ${VERSION}`);
    return;
  }
  let cfg;
  try {
    cfg = parseServerFlags(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`quorumkv: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = new Logger(cfg.logLevel);
  let member;
  try {
    configureHeap();
    member = await startMember(cfg, log);
  } catch (err) {
    log.error('failed to start', { error: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('received signal, shutting down', { signal });
    // Bounded whatever the load: clients get SHUTDOWN_GRACE_MS to finish, and the process exits
    // after SHUTDOWN_MS_MAX even if a step of the stop hangs (the WAL makes that safe).
    setTimeout(() => {
      log.error('shutdown did not finish in time; exiting', { timeoutMs: SHUTDOWN_MS_MAX });
      process.exit(1);
    }, SHUTDOWN_MS_MAX);
    member.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('shutdown failed', { error: String(err) });
        process.exit(1);
      },
    );
  };
  // As etcd: a member removed from the cluster exits on its own.
  // It stops serving at once but closes a few seconds later, so that the answer to the request that
  // removed it (possibly sent through this very member) still gets out, as etcd delays its stop.
  void member.removed.then(() => setTimeout(() => shutdown('removed from the cluster'), REMOVED_STOP_DELAY_MS));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

void main();
