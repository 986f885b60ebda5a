// A small reader and writer for datadriven test files (the format of etcd-io/raft's testdata,
// from cockroachdb/datadriven): comments and blank lines, then a command line, then `----`, then
// the expected output up to the next blank line.
//
//   # A comment: the story of what comes next.
//   propose 1 data
//   ----
//   ok
//
// An output that itself contains blank lines is written between two `----` lines and ends with
// two `----` lines. Rewriting keeps everything but the expected outputs byte for byte.

export interface Arg {
  key: string;
  /** `key=v` gives [v]; `key=(a,b)` gives [a, b]; a bare `key` gives []. */
  vals: string[];
}

export interface Case {
  /** 1-based line of the command, for error messages. */
  line: number;
  /** Comments and blank lines before the command, verbatim. */
  preamble: string[];
  /** The command line verbatim (plus any input lines up to `----`). */
  commandText: string;
  cmd: string;
  args: Arg[];
  /** Lines between the command line and `----`. */
  input: string[];
  expected: string;
}

export class DataDrivenSyntaxError extends Error {
  override name = 'DataDrivenSyntaxError';
}

const SEPARATOR = '----';

/** Splits a command line into the command and its arguments (parentheses group values). */
export function parseCommandLine(line: string): { cmd: string; args: Arg[] } {
  const tokens: string[] = [];
  let cur = '';
  let depth = 0;
  for (const ch of line.trim()) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0) throw new DataDrivenSyntaxError(`unbalanced ')' in: ${line}`);
    if (/\s/.test(ch) && depth === 0) {
      if (cur !== '') tokens.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (depth !== 0) throw new DataDrivenSyntaxError(`unbalanced '(' in: ${line}`);
  if (cur !== '') tokens.push(cur);
  const [cmd, ...rest] = tokens;
  if (cmd === undefined) throw new DataDrivenSyntaxError('empty command line');
  const args = rest.map((tok): Arg => {
    const eq = tok.indexOf('=');
    if (eq < 0) return { key: tok, vals: [] };
    const key = tok.slice(0, eq);
    const v = tok.slice(eq + 1);
    if (v.startsWith('(') && v.endsWith(')')) {
      const inner = v.slice(1, -1).trim();
      return { key, vals: inner === '' ? [] : inner.split(/[\s,]+/) };
    }
    return { key, vals: [v] };
  });
  return { cmd, args };
}

export function parseFile(text: string): { cases: Case[]; trailer: string[] } {
  const lines = text.split('\n');
  // A final newline is not an extra empty line.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const cases: Case[] = [];
  let i = 0;
  let preamble: string[] = [];
  while (i < lines.length) {
    const l = lines[i]!;
    if (l.trim() === '' || l.startsWith('#')) {
      preamble.push(l);
      i++;
      continue;
    }
    const line = i + 1;
    const commandLines = [l];
    i++;
    while (i < lines.length && lines[i] !== SEPARATOR) commandLines.push(lines[i++]!);
    if (i >= lines.length) throw new DataDrivenSyntaxError(`line ${line}: command without '${SEPARATOR}': ${l}`);
    i++; // the separator
    const out: string[] = [];
    if (lines[i] === SEPARATOR) {
      // Block form: ends with two separator lines.
      i++;
      while (i < lines.length && !(lines[i] === SEPARATOR && lines[i + 1] === SEPARATOR)) out.push(lines[i++]!);
      if (i >= lines.length) throw new DataDrivenSyntaxError(`line ${line}: unterminated '${SEPARATOR}' block`);
      i += 2;
    } else {
      while (i < lines.length && lines[i]!.trim() !== '') out.push(lines[i++]!);
    }
    const { cmd, args } = parseCommandLine(l);
    cases.push({
      line,
      preamble,
      commandText: commandLines.join('\n'),
      cmd,
      args,
      input: commandLines.slice(1),
      expected: out.join('\n'),
    });
    preamble = [];
  }
  return { cases, trailer: preamble };
}

/** The file text with every case's expected output replaced by `outputs[k]`. */
export function renderFile(cases: readonly Case[], outputs: readonly string[], trailer: readonly string[]): string {
  const parts: string[] = [];
  cases.forEach((c, k) => {
    parts.push(...c.preamble);
    const out = (outputs[k] ?? c.expected).replace(/\n+$/, '');
    const block = out.split('\n').some((l) => l.trim() === '');
    parts.push(c.commandText);
    parts.push(SEPARATOR);
    if (block) parts.push(SEPARATOR, out, SEPARATOR, SEPARATOR);
    else parts.push(out);
  });
  parts.push(...trailer);
  return parts.join('\n') + '\n';
}
