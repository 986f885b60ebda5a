// Values out of the heap (--hot-value-bytes, mvcc/spill.ts) on a real server process, driven with
// the real etcdctl: with a budget of 0 every value is read back from the spill file, so every way
// a value leaves the store is checked against what was written: get (plain, sorted by value,
// keys only), txn compares on values, put/delete --prev-kv, watch from an old revision with
// prev_kv, hashes against a member that keeps its values in memory, compaction + defragment, and
// a restart (the spill file is rebuilt from the backend).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { etcdctl, requireEtcdctl, startServer, tempDir, type ServerProcess } from './harness';

const KEYS = 300;
const keyOf = (i: number) => `sp/${String(i).padStart(4, '0')}`;
/** Distinct values of different lengths (some 0, some beyond one 4 KiB page), not in key order. */
const valueOf = (i: number, round: number) => (i % 37 === 0 ? '' : `${round}:${(i * 7919) % 1000}:`.padEnd(5 + ((i * 131) % 5000), String.fromCharCode(97 + (i % 26))));

async function ctl(srv: ServerProcess, args: string[], input?: string): Promise<string> {
  const r = await etcdctl(srv.endpoint, args, input);
  assert.equal(r.code, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function getAll(srv: ServerProcess, extra: string[] = []): Promise<{ key: string; value: string; mod: number }[]> {
  const out = JSON.parse(await ctl(srv, ['get', 'sp/', '--prefix', '-w', 'json', ...extra]));
  return (out.kvs ?? []).map((kv: { key: string; value?: string; mod_revision: number }) => ({
    key: Buffer.from(kv.key, 'base64').toString(),
    value: Buffer.from(kv.value ?? '', 'base64').toString(),
    mod: kv.mod_revision,
  }));
}

async function hashAt(srv: ServerProcess, rev: number): Promise<number> {
  const out = JSON.parse(await ctl(srv, ['endpoint', 'hashkv', `--rev=${rev}`, '-w', 'json']));
  return out[0].HashKV.hash;
}

describe('values out of the heap: --hot-value-bytes=0 (1 member, etcdctl)', function () {
  this.timeout(120_000);
  let srv: ServerProcess | undefined;
  let plain: ServerProcess | undefined;
  afterEach(async () => {
    await srv?.stop();
    await plain?.stop();
    srv = plain = undefined;
  });

  it('every read, event, compare and hash sees the written values, across compaction and a restart', async function () {
    requireEtcdctl(this);
    const dataDir = tempDir();
    srv = await startServer({ dataDir, args: ['--hot-value-bytes=0'] });
    plain = await startServer({ args: ['--hot-value-bytes=-1'] });
    // Two rounds of puts: the first round's versions become history (and later compacted).
    for (const s of [srv, plain]) {
      for (let round = 0; round < 2; round++) {
        const lines = Array.from({ length: KEYS }, (_, i) => `put ${keyOf(i)} "${valueOf(i, round)}"`);
        // One txn per 100 keys keeps the etcdctl calls few.
        for (let b = 0; b < KEYS; b += 100) await ctl(s, ['txn'], `\n${lines.slice(b, b + 100).join("\n")}\n\n\n`);
      }
    }
    // The spill file exists and holds the values (nothing forces an fsync, but the size is there).
    const spillDir = path.join(dataDir, 'member', 'spill');
    const spillBytes = fs.readdirSync(spillDir).reduce((n, f) => n + fs.statSync(path.join(spillDir, f)).size, 0);
    assert.ok(spillBytes > KEYS * 1000, `spill files hold ${spillBytes} bytes`);

    const want = Array.from({ length: KEYS }, (_, i) => ({ key: keyOf(i), value: valueOf(i, 1) }));
    const got = await getAll(srv);
    assert.deepEqual(got.map(({ key, value }) => ({ key, value })), want);
    const byValue = await getAll(srv, ['--sort-by=VALUE', '--order=DESCEND', '--limit=50']);
    const wantByValue = [...want].sort((a, b) => (a.value < b.value ? 1 : a.value > b.value ? -1 : a.key < b.key ? -1 : 1)).slice(0, 50);
    assert.deepEqual(byValue.map((kv) => kv.value), wantByValue.map((kv) => kv.value));
    const keysOnly = await getAll(srv, ['--keys-only']);
    assert.equal(keysOnly.length, KEYS);
    assert.ok(keysOnly.every((kv) => kv.value === ''));

    // The first round at its revision: history read back from the spill file.
    const firstRoundRev = got[0]!.mod - 1; // the last first-round txn (keys 200-299)
    const old = JSON.parse(await ctl(srv, ['get', keyOf(250), `--rev=${firstRoundRev}`, '-w', 'json']));
    assert.equal(Buffer.from(old.kvs[0].value, 'base64').toString(), valueOf(250, 0));

    // A txn compare on a spilled value, and the prev_kv of a put and a delete.
    const txn = await ctl(srv, ['txn'], `value("${keyOf(5)}") = "${valueOf(5, 1)}"\n\nput sp/txn yes\n\nput sp/txn no\n\n`);
    assert.match(txn, /^SUCCESS/);
    const prevPut = await ctl(srv, ['put', keyOf(6), 'new', '--prev-kv']);
    assert.ok(prevPut.includes(valueOf(6, 1)), prevPut);
    const prevDel = await ctl(srv, ['del', keyOf(8), '--prev-kv']);
    assert.ok(prevDel.includes(valueOf(8, 1)), prevDel);

    // A watch from revision 2 replays the whole history with prev_kv.
    const watch = await etcdctl(srv.endpoint, ['watch', keyOf(9), '--rev=2', '--prev-kv', '-w', 'json'], undefined, 3_000);
    const events = watch.stdout.split("\n").filter((l) => l.startsWith('{')).flatMap((l) => JSON.parse(l).Events ?? []);
    assert.equal(events.length, 2, watch.stdout + watch.stderr);
    assert.equal(Buffer.from(events[0].kv.value ?? '', 'base64').toString(), valueOf(9, 0));
    assert.equal(Buffer.from(events[1].kv.value ?? '', 'base64').toString(), valueOf(9, 1));
    assert.equal(Buffer.from(events[1].prev_kv.value ?? '', 'base64').toString(), valueOf(9, 0));

    // Same writes, same hash as the member holding every value in memory.
    const rev = got[got.length - 1]!.mod;
    assert.equal(await hashAt(srv, rev), await hashAt(plain, rev));

    // Compaction frees the first round; defragment; then restart: the spill file is rebuilt.
    await ctl(srv, ['compact', String(rev)]);
    await ctl(srv, ['defrag']);
    const afterCompact = await getAll(srv);
    await srv.stop('SIGTERM');
    srv = await startServer({ dataDir, args: ['--hot-value-bytes=0'] });
    assert.deepEqual(await getAll(srv), afterCompact);
    assert.equal(afterCompact.find((kv) => kv.key === keyOf(6))?.value, 'new');
  });

  it('refuses a bad --hot-value-bytes with one clear line', async () => {
    await assert.rejects(startServer({ args: ['--hot-value-bytes=-5'], readyTimeoutMs: 5_000 }), /invalid --hot-value-bytes="-5": expected a number of bytes >= 0, or -1/);
  });
});
