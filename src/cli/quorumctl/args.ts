// Command-line parsing for quorumctl: positional words and flags in any order, etcdctl style
// (`--flag=value`, `--flag value`, `-w json`, bare boolean flags). Unknown flags are an error, so
// a typo never silently changes what a command does.

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface FlagSpec {
  /** Flags that take no value (present = true). */
  booleans: readonly string[];
  /** Flags that take a value. */
  values: readonly string[];
  /** Short aliases, e.g. { w: 'write-out' }. */
  aliases?: Readonly<Record<string, string>>;
}

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string>;
}

export function parseArgs(argv: readonly string[], spec: FlagSpec): ParsedArgs {
  const booleans = new Set(spec.booleans);
  const values = new Set(spec.values);
  const positional: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    const m = /^--?([A-Za-z][A-Za-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      positional.push(arg);
      continue;
    }
    const name = spec.aliases?.[m[1]!] ?? m[1]!;
    if (booleans.has(name)) {
      flags.set(name, m[2] ?? 'true');
    } else if (values.has(name)) {
      let v = m[2];
      if (v === undefined) {
        v = argv[++i];
        if (v === undefined) throw new UsageError(`flag --${name} needs a value`);
      }
      flags.set(name, v);
    } else {
      throw new UsageError(`unknown flag: ${arg}`);
    }
  }
  return { positional, flags };
}

export function flagBool(a: ParsedArgs, name: string): boolean {
  const v = a.flags.get(name);
  return v !== undefined && v !== 'false' && v !== '0';
}

/** A non-negative decimal integer flag (revisions, TTLs). */
export function flagInt(a: ParsedArgs, name: string, dflt: number): number {
  const v = a.flags.get(name);
  if (v === undefined) return dflt;
  if (!/^[0-9]+$/.test(v)) throw new UsageError(`invalid --${name}=${JSON.stringify(v)}: expected a non-negative integer`);
  return Number(v);
}

/** A Go-style duration ("5s", "500ms", "1m") in milliseconds, as etcdctl's timeouts. */
export function flagDurationMs(a: ParsedArgs, name: string, dfltMs: number): number {
  const v = a.flags.get(name);
  if (v === undefined) return dfltMs;
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m)$/.exec(v);
  if (!m) throw new UsageError(`invalid --${name}=${JSON.stringify(v)}: expected a duration like 500ms, 5s or 1m`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as 'ms' | 's' | 'm'];
}

/** etcdctl prints and parses lease and member IDs in hex. */
export function parseHexId(raw: string | undefined, what: string): bigint {
  if (raw === undefined || !/^[0-9a-fA-F]{1,16}$/.test(raw)) throw new UsageError(`bad ${what} ID ${JSON.stringify(raw ?? '')}: expected a hex ID as printed by quorumctl/etcdctl`);
  return BigInt('0x' + raw);
}

/** Exactly `n` positional arguments, or a usage error naming the command. */
export function expectArgs(a: ParsedArgs, n: number, usage: string): string[] {
  if (a.positional.length !== n) throw new UsageError(`${usage}`);
  return a.positional;
}
