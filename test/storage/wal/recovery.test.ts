// Recovery from damage. A torn last batch (a crash during its write) is cut off and reported; any
// damage to data that was once synced (an earlier batch, a sealed segment, a missing or misnamed
// segment) refuses to start with WalCorruptionError naming the file and byte offset.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Entry, HardState } from '../../../src/raft/types';
import { Rng } from '../../../src/util/rng';
import { Wal, WalCorruptionError } from '../../../src/storage/wal';
import { encodeSaveBatch, saveBatchBytes } from '../../../src/storage/wal/encoder';
import { recover } from '../../../src/storage/wal/recovery';
import { META, Model, cleanup, copyDir, ent, ents, flipBit, hs, overwrite, segmentFiles, summary, tmpDir, zeroFrom } from './helpers';

const OPTS = { segmentBytes: 16 * 1024, fsync: false };

interface BatchPos {
  file: string;
  start: number;
  end: number;
  /** The log after this batch. */
  model: Model;
}

/** 3+ segments: 14 large batches (4 per segment), then 5 small ones in the last segment. */
async function build(tag: string, lastEntries?: Entry[]): Promise<{ dir: string; batches: BatchPos[] }> {
  const dir = path.join(tmpDir(tag), 'wal');
  const wal = await Wal.create(dir, META, OPTS);
  const m = new Model();
  const batches: BatchPos[] = [];
  const save = async (h: HardState | undefined, es: Entry[]) => {
    await wal.save(h, es);
    m.save(h, es);
    const { file, offset } = wal.tail;
    batches.push({ file, start: offset - saveBatchBytes(h, es), end: offset, model: m.clone() });
  };
  for (let b = 0; b < 14; b++) await save(hs(1, b * 10), ents(b * 10 + 1, b * 10 + 10, 1, 300));
  for (let b = 0; b < 4; b++) await save(hs(2, 140 + b * 3), ents(141 + b * 3, 143 + b * 3, 2));
  await save(hs(2, 153), lastEntries ?? ents(153, 155, 2));
  await wal.close();
  assert.ok(segmentFiles(dir).length >= 3, 'the scenario needs 3+ segments');
  const last = batches[batches.length - 1]!;
  assert.equal(batches[batches.length - 2]!.file, last.file, 'the last two batches share a segment');
  return { dir, batches };
}

/** Recovery's verdict on `dir` read through a window of `windowBytes` (recovery only reads; Wal.open
 *  repairs after it): the error, or the log, the torn tail and where the next batch would go. */
async function verdict(dir: string, windowBytes?: number): Promise<unknown> {
  try {
    const r = await recover(dir, windowBytes);
    return { log: summary(r.state), torn: r.state.tornTail, tail: [r.tailOffset, r.tailStartBatchEnd, r.tailFileBytes, r.lastBatchSeq, r.lastIndex] };
  } catch (err) {
    return err instanceof WalCorruptionError ? { file: err.file, offset: err.offset, message: err.message } : String(err);
  }
}

/** Windows smaller than a segment (the scan slides) and than a batch (the window grows) reach the
 *  verdict of the default window, which holds each of these 16 KiB segments whole. */
async function expectSameVerdictThroughSmallWindows(dir: string): Promise<void> {
  const whole = await verdict(dir);
  for (const windowBytes of [64, 4096]) assert.deepEqual(await verdict(dir, windowBytes), whole, `window of ${windowBytes} bytes`);
}

async function expectCorruption(dir: string, file: string, range: [number, number] | undefined, reason: RegExp): Promise<WalCorruptionError> {
  await expectSameVerdictThroughSmallWindows(dir);
  const err = await Wal.open(dir, OPTS).then(
    async (r) => {
      await r.wal.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  assert.ok(err instanceof WalCorruptionError, `expected WalCorruptionError, got ${String(err)}`);
  assert.equal(err.file, file);
  if (range) assert.ok(err.offset >= range[0] && err.offset < range[1], `offset ${err.offset} outside [${range[0]}, ${range[1]})`);
  assert.ok(err.message.includes(`in ${file} at offset ${err.offset}: refusing to start`), err.message);
  assert.match(err.message, reason);
  return err;
}

/** Opens a damaged copy, expects `expected` (and a torn tail unless `clean`), then saves + reopens. */
async function expectRecovers(dir: string, file: string, tornAt: number | undefined, expected: Model): Promise<void> {
  await expectSameVerdictThroughSmallWindows(dir);
  const { wal, state } = await Wal.open(dir, OPTS);
  assert.deepEqual(summary(state), summary(expected));
  if (tornAt === undefined) {
    assert.equal(state.tornTail, undefined);
  } else {
    assert.ok(state.tornTail !== undefined, 'torn tail reported');
    assert.equal(state.tornTail.file, file);
    assert.equal(state.tornTail.offset, tornAt);
    assert.ok(state.tornTail.droppedBytes > 0);
  }
  // The repaired segment is preallocated again and reads as zeros after the log's end.
  const bytes = fs.readFileSync(path.join(dir, file));
  assert.ok(bytes.length >= OPTS.segmentBytes);
  assert.equal(bytes.subarray(wal.tail.offset).some((b) => b !== 0), false, 'zeros after the end of the log');
  const next = expected.lastIndex() + 1;
  await wal.save(hs(3, next - 1), ents(next, next + 1, 3));
  await wal.close();
  const again = await Wal.open(dir, OPTS);
  const m = expected.clone();
  m.save(hs(3, next - 1), ents(next, next + 1, 3));
  assert.deepEqual(summary(again.state), summary(m));
  assert.equal(again.state.tornTail, undefined);
  await again.wal.close();
}

describe('wal recovery', function () {
  this.timeout(120_000);
  let base: { dir: string; batches: BatchPos[] };
  before(async () => {
    base = await build('base');
  });
  after(cleanup);

  for (const mode of ['zero', 'cut', 'garbage'] as const) {
    it(`a torn last batch (${mode === 'cut' ? 'file cut' : mode === 'zero' ? 'zeroed' : 'random bytes'} from every byte offset) is truncated; the batches before it recover exactly`, async () => {
      const last = base.batches[base.batches.length - 1]!;
      const prev = base.batches[base.batches.length - 2]!.model;
      const original = fs.readFileSync(path.join(base.dir, last.file));
      const rng = new Rng(11);
      for (let k = last.start; k < last.end; k++) {
        const dir = copyDir(base.dir, 'torn');
        const file = path.join(dir, last.file);
        if (mode === 'zero') zeroFrom(file, k, last.end);
        if (mode === 'cut') fs.truncateSync(file, k);
        if (mode === 'garbage') overwrite(file, k, Buffer.from(Array.from({ length: last.end - k }, () => 1 + rng.int(255))));
        if (mode === 'zero' && original.subarray(k, last.end).every((b) => b === 0)) {
          await expectRecovers(dir, last.file, undefined, last.model); // zeroing zeros changes nothing
        } else {
          await expectRecovers(dir, last.file, k === last.start && mode !== 'garbage' ? undefined : last.start, prev);
        }
        fs.rmSync(path.dirname(dir), { recursive: true, force: true });
      }
    });
  }

  it('a flipped bit anywhere in an earlier batch refuses to start, naming the file and the offset', async () => {
    const victim = base.batches[base.batches.length - 3]!;
    for (let o = victim.start; o < victim.end; o++) {
      const dir = copyDir(base.dir, 'flip');
      flipBit(path.join(dir, victim.file), o, o % 8);
      await expectCorruption(dir, victim.file, [victim.start, victim.end], /checksum mismatch|overruns|extends past|expected a batch header/);
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('a flipped bit anywhere in the last batch is a torn tail: truncated and reported', async () => {
    const last = base.batches[base.batches.length - 1]!;
    const prev = base.batches[base.batches.length - 2]!.model;
    for (let o = last.start; o < last.end; o++) {
      const dir = copyDir(base.dir, 'flip-last');
      flipBit(path.join(dir, last.file), o, (o * 3) % 8);
      await expectRecovers(dir, last.file, last.start, prev);
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('a flipped bit in a sealed (non-last) segment, even in its zero tail, refuses to start', async () => {
    const files = segmentFiles(base.dir);
    const victim = base.batches.find((b) => b.file === files[0])!;
    for (let o = victim.start; o < victim.end; o += 7) {
      const dir = copyDir(base.dir, 'flip-sealed', [files[0]!]);
      flipBit(path.join(dir, files[0]!), o, 2);
      await expectCorruption(dir, files[0]!, [victim.start, victim.end], /./);
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
    const dir = copyDir(base.dir, 'flip-sealed-tail', [files[0]!]);
    flipBit(path.join(dir, files[0]!), OPTS.segmentBytes - 1, 0);
    await expectCorruption(dir, files[0]!, [OPTS.segmentBytes - 1, OPTS.segmentBytes], /non-zero bytes after the end of the log/);
  });

  it("a flipped bit in the last segment's start batch refuses to start (a start batch is synced before the segment is named)", async () => {
    const last = base.batches[base.batches.length - 1]!;
    const dir = copyDir(base.dir, 'flip-start');
    flipBit(path.join(dir, last.file), 40, 1);
    await expectCorruption(dir, last.file, [0, 100], /start batch/);
  });

  it('a sealed segment cut short, mid-batch or exactly at a batch boundary, refuses to start', async () => {
    const files = segmentFiles(base.dir);
    const inFirst = base.batches.filter((b) => b.file === files[0]);
    const lastOfFirst = inFirst[inFirst.length - 1]!;
    const mid = copyDir(base.dir, 'cut-mid', [files[0]!]);
    fs.truncateSync(path.join(mid, files[0]!), lastOfFirst.start + 100);
    await expectCorruption(mid, files[0]!, [lastOfFirst.start, lastOfFirst.end], /extends past the end of the file/);
    const boundary = copyDir(base.dir, 'cut-boundary', [files[0]!]);
    fs.truncateSync(path.join(boundary, files[0]!), lastOfFirst.start);
    await expectCorruption(boundary, files[1]!, [0, 1], /the previous segment was cut short|segment name says/);
  });

  it('a missing middle segment, a misnamed segment, or a missing first segment refuses to start', async () => {
    const files = segmentFiles(base.dir);
    const gap = copyDir(base.dir, 'gap');
    fs.unlinkSync(path.join(gap, files[1]!));
    await expectCorruption(gap, files[2]!, [0, 1], /segment sequence gap/);

    const renamed = copyDir(base.dir, 'renamed');
    const wrong = files[1]!.replace(/-[0-9a-f]{16}\.wal$/, '-00000000000000aa.wal');
    fs.renameSync(path.join(renamed, files[1]!), path.join(renamed, wrong));
    await expectCorruption(renamed, wrong, [0, 1], /segment name says its first index is 170/);

    const junk = copyDir(base.dir, 'junk');
    fs.writeFileSync(path.join(junk, 'backup.wal'), 'x');
    await expectCorruption(junk, 'backup.wal', [0, 1], /misnamed segment file/);

    const headless = copyDir(base.dir, 'headless');
    fs.unlinkSync(path.join(headless, files[0]!));
    await expectCorruption(headless, files[1]!, [0, 1], /entries 1\.\.\d+ are missing/);
  });

  it('bytes inside a torn batch that look like an older batch are not mistaken for later valid data', async () => {
    // The last batch carries, as entry data, a complete valid batch with seq 1; then its header is lost.
    const fake = encodeSaveBatch(1, hs(9, 9), ents(1, 2, 9));
    const built = await build('lookalike', [ent(153, 2), { ...ent(154, 2), data: fake }, ent(155, 2)]);
    const last = built.batches[built.batches.length - 1]!;
    zeroFrom(path.join(built.dir, last.file), last.start, last.start + 12);
    await expectRecovers(built.dir, last.file, last.start, built.batches[built.batches.length - 2]!.model);
  });

  it('a clean log opens without repairs and reports no torn tail', async () => {
    const dir = copyDir(base.dir, 'clean');
    await expectRecovers(dir, base.batches[base.batches.length - 1]!.file, undefined, base.batches[base.batches.length - 1]!.model);
  });
});
