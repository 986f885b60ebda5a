// Sums a V8 CPU profile (node --cpu-prof) over a time window: self and total time per function,
// largest first. The window is on CLOCK_MONOTONIC in µs, the clock of the profile's timestamps and
// of the windows bench-scale prints for each operation; without one, the whole profile.
//
// Usage: node dist/scripts/cpuprofile-window.js FILE.cpuprofile [--from=µs] [--to=µs] [--top=40]
import fs from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

function label(f: CallFrame): string {
  const file = f.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^node:/, '');
  return `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : ''}`.trim();
}

function main(): void {
  const file = process.argv[2];
  if (file === undefined || file.startsWith('--')) throw new Error('usage: cpuprofile-window.js FILE [--from=µs] [--to=µs] [--top=N]');
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const from = Number(arg('from', String(p.startTime)));
  const to = Number(arg('to', String(p.endTime)));
  const top = Number(arg('top', '40'));
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let t = p.startTime;
  let inWindow = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    if (t < from || t > to) continue;
    // A sample stands for the time until the next one.
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    inWindow += dt;
    const leaf = byId.get(p.samples[i]!)!;
    const l = label(leaf.callFrame);
    self.set(l, (self.get(l) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const k = label(byId.get(id)!.callFrame);
      if (seen.has(k)) continue; // recursion counts once
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  }
  const print = (title: string, m: Map<string, number>) => {
    console.log(`\n${title} (ms, % of ${inWindow.toFixed(0)} ms in the window)`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${v.toFixed(0).padStart(8)} ${((v / inWindow) * 100).toFixed(1).padStart(5)}%  ${k}`);
  };
  console.log(`window ${((to - from) / 1000).toFixed(0)} ms of a ${((p.endTime - p.startTime) / 1000).toFixed(0)} ms profile`);
  print('self', self);
  print('total', total);
}

main();
