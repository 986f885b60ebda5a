// Runs a golden trace file: every command against one fresh InteractionEnv, each output compared
// with the expected one in the file. A mismatch is reported as the command, its file:line and a
// line diff; with rewrite the file is regenerated instead (review the diff before committing).

import type { Case } from './datadriven';
import { parseFile, renderFile } from './datadriven';
import { handle, ScenarioError } from './commands';
import { InteractionEnv } from './env';

export interface Mismatch {
  line: number;
  command: string;
  diff: string[];
}

export interface FileResult {
  cases: Case[];
  outputs: string[];
  mismatches: Mismatch[];
  /** The file as it would be rewritten with the actual outputs. */
  rewritten: string;
}

/** Runs a scenario. A scenario mistake or a raft assertion throws, naming the file and line. */
export function runScenario(name: string, text: string): FileResult {
  const { cases, trailer } = parseFile(text);
  const env = new InteractionEnv();
  const outputs: string[] = [];
  const mismatches: Mismatch[] = [];
  for (const c of cases) {
    let out: string;
    try {
      out = handle(env, c);
    } catch (e) {
      const what = e instanceof ScenarioError ? 'scenario error' : 'raised';
      const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      throw new Error(`${name}:${c.line}: ${c.commandText.split('\n')[0]}: ${what}: ${msg}`, { cause: e });
    }
    outputs.push(out);
    if (out !== c.expected) {
      mismatches.push({ line: c.line, command: c.commandText.split('\n')[0]!, diff: lineDiff(c.expected.split('\n'), out.split('\n')) });
    }
  }
  return { cases, outputs, mismatches, rewritten: renderFile(cases, outputs, trailer) };
}

export function formatMismatches(name: string, ms: readonly Mismatch[]): string {
  if (ms.length === 0) return '';
  const first = ms[0]!;
  const lines = [
    `${name}:${first.line}: output of '${first.command}' differs (- expected, + actual):`,
    ...first.diff.map((l) => `    ${l}`),
  ];
  if (ms.length > 1) lines.push(`  ...and ${ms.length - 1} later command(s) differ too: lines ${ms.slice(1).map((m) => m.line).join(', ')}`);
  lines.push('  If the new output is right, regenerate with REWRITE=1 (or --rewrite) and review the diff.');
  return lines.join('\n');
}

/** Lines past this many on either side are not aligned, just shown (the diff is quadratic). */
const DIFF_LINES_MAX = 3000;
/** Unchanged lines shown around each change. */
const DIFF_CONTEXT_LINES = 3;

/** A line diff (longest common subsequence), with a little context around each change. */
export function lineDiff(a: string[], b: string[]): string[] {
  if (a.length > DIFF_LINES_MAX || b.length > DIFF_LINES_MAX) {
    return [...a.map((l) => `- ${l}`), ...b.map((l) => `+ ${l}`)];
  }
  // lcs[i][j]: length of the LCS of a[i:] and b[j:].
  const lcs: number[][] = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const ops: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      ops.push(`  ${a[i]}`);
      i++;
      j++;
    } else if (i < a.length && (j === b.length || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) {
      ops.push(`- ${a[i]}`);
      i++;
    } else {
      ops.push(`+ ${b[j]}`);
      j++;
    }
  }
  // Keep only the changes and their context.
  const keep = ops.map((op, k) => ops.slice(Math.max(0, k - DIFF_CONTEXT_LINES), k + DIFF_CONTEXT_LINES + 1).some((o) => !o.startsWith('  ')));
  const out: string[] = [];
  ops.forEach((op, k) => {
    if (keep[k]) out.push(op);
    else if (k === 0 || keep[k - 1]) out.push('  ...');
  });
  return out;
}
