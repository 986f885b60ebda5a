// Durations as etcd's flags and ETCD_* variables spell them (Go's time.ParseDuration).

const UNIT_MS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go's time.ParseDuration subset etcd's flags accept: "90s", "1h30m", "1.5h", "500ms", "0".
 *  Milliseconds, or undefined when `s` is not a duration. */
export function parseGoDuration(s: string): number | undefined {
  if (s === '0') return 0;
  const re = /([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos !== s.length || s.length === 0) return undefined;
  return total;
}
