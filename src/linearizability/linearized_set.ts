// The set of linearized operations of one search, as a bitset whose memo copies stay small.
//
// The search memoizes every (set, state) pair it reaches, so a copy of the set is stored per step; a
// plain bitset of n operations would make the memo O(n²) bytes. But the set is nearly a prefix: with
// the operations of known outcome numbered by return time, every one returned before the search's
// frontier is in it, so its words are all ones up to some point, then a few mixed words, then zeros.
// Operations of unknown outcome (which may stay out forever) get their own words after those. A copy
// keeps only [count of leading all-ones words, end of the nonzero known words, the mixed known
// words, the unknown-outcome words up to the last nonzero one]: a canonical form, so two sets are
// equal iff their copies are.
import { assert } from '../util/assert';

const ALL_ONES = 0xffffffff;

export class LinearizedSet {
  private readonly words: Uint32Array;
  /** Words of the known-outcome section. */
  private readonly knownWords: number;
  /** Leading words of the known section that are all ones. */
  private full = 0;
  /** 1 + the last nonzero word of the known section (>= full). */
  private hi = 0;

  /** `known` operations numbered 0..known-1, then `unknown` ones numbered known..known+unknown-1. */
  constructor(
    private readonly known: number,
    unknown: number,
  ) {
    this.knownWords = (known + 31) >>> 5;
    this.words = new Uint32Array(this.knownWords + ((unknown + 31) >>> 5));
  }

  private bit(i: number): number {
    return i < this.known ? i : this.knownWords * 32 + (i - this.known);
  }

  has(i: number): boolean {
    const b = this.bit(i);
    return (this.words[b >>> 5]! & (1 << (b & 31))) !== 0;
  }

  flip(i: number): void {
    const b = this.bit(i);
    const w = b >>> 5;
    this.words[w] = this.words[w]! ^ (1 << (b & 31));
    if (w >= this.knownWords) return;
    const words = this.words;
    if (words[w] === ALL_ONES && w === this.full) while (this.full < this.knownWords && words[this.full] === ALL_ONES) this.full++;
    if (words[w] !== ALL_ONES && w < this.full) this.full = w;
    if (words[w] !== 0 && w >= this.hi) this.hi = w + 1;
    while (this.hi > 0 && words[this.hi - 1] === 0) this.hi--;
    if (this.hi < this.full) this.hi = this.full;
    assert(this.full <= this.hi && this.hi <= this.knownWords, 'linearized set bounds');
  }

  /** 1 + the last nonzero word of the unknown-outcome section (absolute word index). */
  private unknownEnd(): number {
    let end = this.words.length;
    while (end > this.knownWords && this.words[end - 1] === 0) end--;
    return end;
  }

  /** The canonical copy (see the file comment). */
  snapshot(): Uint32Array {
    const end = this.unknownEnd();
    const mixed = this.hi - this.full;
    const out = new Uint32Array(2 + mixed + (end - this.knownWords));
    out[0] = this.full;
    out[1] = this.hi;
    out.set(this.words.subarray(this.full, this.hi), 2);
    out.set(this.words.subarray(this.knownWords, end), 2 + mixed);
    return out;
  }

  /** Is this set the one `s` (from snapshot()) was taken of? */
  equals(s: Uint32Array): boolean {
    if (s[0] !== this.full || s[1] !== this.hi) return false;
    const mixed = this.hi - this.full;
    const end = this.unknownEnd();
    if (s.length !== 2 + mixed + (end - this.knownWords)) return false;
    for (let j = 0; j < mixed; j++) if (s[2 + j] !== this.words[this.full + j]) return false;
    for (let j = this.knownWords; j < end; j++) if (s[2 + mixed + j - this.knownWords] !== this.words[j]) return false;
    return true;
  }
}
