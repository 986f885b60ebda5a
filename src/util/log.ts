// Structured logging: one JSON object per line on stderr, with a level and the member's name, so
// that logs of several members can be merged and filtered by machines.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export class Logger {
  private minRank: number;
  constructor(
    level: LogLevel,
    private readonly fields: Record<string, unknown> = {},
    private readonly out: (line: string) => void = (line) => process.stderr.write(line + '\n'),
  ) {
    this.minRank = rank[level];
  }

  child(fields: Record<string, unknown>): Logger {
    const l = new Logger('debug', { ...this.fields, ...fields }, this.out);
    l.minRank = this.minRank;
    return l;
  }

  enabled(level: LogLevel): boolean {
    return rank[level] >= this.minRank;
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.write('error', msg, fields);
  }

  private write(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (rank[level] < this.minRank) return;
    const rec = { level, ts: new Date().toISOString(), msg, ...this.fields, ...fields };
    this.out(JSON.stringify(rec, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
  }
}
