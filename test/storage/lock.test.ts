// The data-dir lock (src/storage/lock.ts): held through LevelDB's fcntl lock on <data-dir>/lock, so
// the kernel releases it when the holder dies; a second holder, in this process or another, is
// refused with an error naming the dir and writes nothing; the PID file of older versions is
// ignored and removed.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { treeSnapshot } from '../integration/tree_snapshot';
import { DataDirLockedError, LEGACY_LOCK_FILE, lockDataDir, type DataDirLock } from '../../src/storage/lock';

const LOCK_JS = path.resolve(__dirname, '..', '..', 'src', 'storage', 'lock.js');
const CHILD_TIMEOUT_MS = 10_000;

/** A child process that takes the lock on `dir`, prints "locked" (or the error) and then waits. */
function lockInChild(dir: string): { proc: ChildProcess; result: Promise<string> } {
  const script = `require(${JSON.stringify(LOCK_JS)}).lockDataDir(${JSON.stringify(dir)}).then(
    () => { console.log('locked'); setInterval(() => {}, 1000); },
    (e) => { console.log(e.name + ': ' + e.message); process.exit(3); })`;
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const result = new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => (proc.kill('SIGKILL'), reject(new Error(`child gave no answer in ${CHILD_TIMEOUT_MS} ms: ${out}`))), CHILD_TIMEOUT_MS);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) {
        clearTimeout(t);
        resolve(out.trim());
      }
    });
    proc.on('exit', () => (clearTimeout(t), resolve(out.trim())));
  });
  return { proc, result };
}

function killAndWait(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

describe('data-dir lock', function () {
  this.timeout(30_000);
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  const locks: DataDirLock[] = [];
  const newDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-lock-'));
    dirs.push(d);
    return d;
  };
  afterEach(async () => {
    for (const l of locks.splice(0)) l.release();
    await Promise.all(children.splice(0).map(killAndWait));
  });
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('a second lock in the same process is refused, also through a symlink; after release it can be taken again', async () => {
    const dir = newDir();
    const first = await lockDataDir(dir);
    locks.push(first);
    await assert.rejects(lockDataDir(dir), (e: Error) => e instanceof DataDirLockedError && e.message.includes(dir) && /in use/.test(e.message));
    const link = path.join(newDir(), 'link');
    fs.symlinkSync(dir, link);
    await assert.rejects(lockDataDir(link), DataDirLockedError);
    first.release();
    first.release(); // idempotent
    locks.push(await lockDataDir(dir)); // waits for the release to finish
  });

  it('another process is refused while the lock is held, and writes nothing in the data dir', async () => {
    const dir = newDir();
    locks.push(await lockDataDir(dir));
    fs.mkdirSync(path.join(dir, 'member'));
    fs.writeFileSync(path.join(dir, 'member', 'data'), 'x');
    const before = treeSnapshot(dir);
    const c = lockInChild(dir);
    children.push(c.proc);
    const answer = await c.result;
    assert.match(answer, /^DataDirLockedError: data dir .* is in use by another quorumkv process \(pid \d+ on .*\); refusing to start a second member on it$/);
    assert.ok(answer.includes(dir), answer);
    assert.ok(answer.includes(`pid ${process.pid} `), `names the holder: ${answer}`);
    assert.deepEqual(treeSnapshot(dir), before, 'the refused process changed the data dir');
  });

  it('the kernel releases the lock of a process killed with SIGKILL: the next one takes it at once', async () => {
    const dir = newDir();
    const c = lockInChild(dir);
    children.push(c.proc);
    assert.equal(await c.result, 'locked');
    await assert.rejects(lockDataDir(dir), DataDirLockedError);
    await killAndWait(c.proc);
    locks.push(await lockDataDir(dir));
    // And the other way round: this process holds it, a child is refused.
    const d = lockInChild(dir);
    children.push(d.proc);
    assert.match(await d.result, /DataDirLockedError/);
  });

  it('a PID file left by an older version is ignored, even naming a live process, and removed', async () => {
    const dir = newDir();
    const legacy = path.join(dir, LEGACY_LOCK_FILE);
    // The old check would have refused: that PID (ours) is alive.
    fs.writeFileSync(legacy, `${process.pid}\n`);
    locks.push(await lockDataDir(dir));
    assert.equal(fs.existsSync(legacy), false);
  });

  it('processes racing for one fresh data dir: exactly one wins, 5 rounds of 3', async () => {
    for (let round = 0; round < 5; round++) {
      const dir = newDir();
      const racers = [lockInChild(dir), lockInChild(dir), lockInChild(dir)];
      children.push(...racers.map((r) => r.proc));
      const answers = await Promise.all(racers.map((r) => r.result));
      assert.equal(answers.filter((a) => a === 'locked').length, 1, `round ${round}: ${JSON.stringify(answers)}`);
      assert.equal(answers.filter((a) => a.startsWith('DataDirLockedError: ')).length, 2, `round ${round}: ${JSON.stringify(answers)}`);
      await Promise.all(children.splice(0).map(killAndWait));
    }
  });
});
