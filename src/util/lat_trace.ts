// A latency trace of the write path (issue 20; docs/performance.md, "One put, end to end"): off
// unless the environment names a file prefix in QKV_LAT_TRACE. Then every stamp records
// process.hrtime (CLOCK_MONOTONIC, the same clock in every process of the machine, so the members
// of a local cluster line up) with a tag and two numbers, and the process writes them to
// `<prefix>.<pid>.tsv` when it exits (a member's SIGTERM). Off, a stamp is a call that tests one
// constant; callers on hot paths test `LAT_TRACE` themselves first.
import fs from 'node:fs';

const PREFIX = process.env.QKV_LAT_TRACE ?? '';

/** Whether stamps are recorded (fixed for the process's life). */
export const LAT_TRACE: boolean = PREFIX !== '';

/** Stamps kept at most (a bounded buffer; later ones are dropped). */
const MAX_STAMPS = 2_000_000;

let times: bigint[] = [];
let tags: string[] = [];
let as: number[] = [];
let bs: number[] = [];

/** Records `tag` with two numbers (an entry index, a message type, a port...) at the current time. */
export function latStamp(tag: string, a = 0, b = 0): void {
  if (!LAT_TRACE || times.length >= MAX_STAMPS) return;
  times.push(process.hrtime.bigint());
  tags.push(tag);
  as.push(a);
  bs.push(b);
}

if (LAT_TRACE) {
  process.on('exit', () => {
    const lines: string[] = [];
    for (let i = 0; i < times.length; i++) lines.push(`${times[i]!}\t${tags[i]!}\t${as[i]!}\t${bs[i]!}`);
    fs.writeFileSync(`${PREFIX}.${process.pid}.tsv`, lines.join('\n') + '\n');
    times = [];
    tags = [];
    as = [];
    bs = [];
  });
}
