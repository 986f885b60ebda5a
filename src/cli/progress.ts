// A tiny progress bar for snapshot save/restore: bytes done of total and the rate. Written here
// rather than taken from npm: it is ~60 lines, the CLIs draw one bar at a time (quorumctl's save,
// quorumkv's restore), and a CLI that operators run against production data should not pull in a
// dependency tree for that.
//
// On a terminal (stderr is a TTY) it redraws one line in place, at most every REDRAW_MS; otherwise
// (logs, CI, pipes) it prints a plain line every PLAIN_LINE_MS, and nothing for short transfers.

const REDRAW_MS = 100;
const PLAIN_LINE_MS = 5000;
const BAR_WIDTH = 30;

export interface ProgressOptions {
  label: string;
  stream?: NodeJS.WriteStream;
  /** For tests: draw as on a terminal (or not) whatever the stream is. */
  tty?: boolean;
  now?: () => number;
}

export class ProgressBar {
  private done = 0;
  private total = 0;
  private readonly startMs: number;
  private lastDrawMs = 0;
  private drawn = false;
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly now: () => number;

  constructor(private readonly o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr;
    this.tty = o.tty ?? Boolean(this.stream.isTTY);
    this.now = o.now ?? Date.now;
    this.startMs = this.now();
    this.lastDrawMs = this.startMs;
  }

  /** Sets the bytes done so far (and the total, once known; 0 = unknown). */
  update(doneBytes: number, totalBytes = this.total): void {
    this.done = doneBytes;
    this.total = totalBytes;
    const t = this.now();
    if (t - this.lastDrawMs < (this.tty ? REDRAW_MS : PLAIN_LINE_MS)) return;
    this.lastDrawMs = t;
    this.draw(t);
  }

  /** Draws the final state (on a terminal) and ends the line. */
  finish(): void {
    if (this.tty) {
      this.draw(this.now());
      this.stream.write('\n');
    }
  }

  /** Clears the bar's line on failure, so the error message starts on a clean line. */
  abort(): void {
    if (this.tty && this.drawn) this.stream.write('\n');
  }

  /** The text of the bar, e.g. "snapshot save [=====>    ] 45% 12.3 MB / 27.1 MB 8.2 MB/s". */
  render(t: number): string {
    const secs = Math.max(0.001, (t - this.startMs) / 1000);
    const rate = `${formatBytes(this.done / secs)}/s`;
    if (this.total <= 0) return `${this.o.label} ${formatBytes(this.done)} ${rate}`;
    const frac = Math.min(1, this.done / this.total);
    const full = Math.round(frac * BAR_WIDTH);
    const bar = '='.repeat(full) + (full < BAR_WIDTH ? '>' + ' '.repeat(BAR_WIDTH - full - 1) : '');
    const pct = String(Math.floor(frac * 100)).padStart(3);
    return `${this.o.label} [${bar}] ${pct}% ${formatBytes(this.done)} / ${formatBytes(this.total)} ${rate}`;
  }

  private draw(t: number): void {
    this.drawn = true;
    if (this.tty) this.stream.write(`\r${this.render(t)}\x1b[K`);
    else this.stream.write(`${this.render(t)}\n`);
  }
}

/** SI units as etcdctl prints sizes ("20 kB", "1.5 MB"). */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
}
