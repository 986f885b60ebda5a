// `quorumkv snapshot restore|status` (src/cli/snapshot.ts): argv and output. The work behind them
// is tested in test/server/restore.test.ts and test/storage/snapshot_file.test.ts; the commands
// against real files from etcdctl in test/compat/etcdctl_maintenance.test.ts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { humanizeBytes } from '../../src/cli/snapshot';
import { SERVER_BIN, tempDir } from '../integration/harness';
import { RECORDS, backendStream, fileBytes } from '../storage/snapshot_helpers';

function quorumkv(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SERVER_BIN, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('quorumkv snapshot restore|status', function () {
  this.timeout(30_000);

  it('status prints etcdctl\'s formats; bad usage exits 2, a bad file 1', async () => {
    const dir = tempDir('quorumkv-snapcli-');
    try {
      const f = path.join(dir, 's.db');
      fs.writeFileSync(f, fileBytes(backendStream(RECORDS)));
      const simple = await quorumkv(['snapshot', 'status', f]);
      assert.equal(simple.code, 0, simple.stderr);
      assert.match(simple.stdout, /^[0-9a-f]+, 42, 4, \d+ B\n$/);
      const json = JSON.parse((await quorumkv(['snapshot', 'status', f, '-w', 'json'])).stdout);
      assert.deepEqual({ revision: json.revision, totalKey: json.totalKey }, { revision: 42, totalKey: 4 });
      assert.equal((await quorumkv(['snapshot', 'status'])).code, 2);
      assert.equal((await quorumkv(['snapshot', 'restore', f, '--no-such-flag=1'])).code, 2);
      fs.writeFileSync(f, backendStream(RECORDS));
      const bad = await quorumkv(['snapshot', 'status', f]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /^Error: snapshot file integrity check failed: sha256 checksum not found/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sizes print as etcdctl prints them (go-humanize, SI units)', () => {
    assert.equal(humanizeBytes(0), '0 B');
    assert.equal(humanizeBytes(544), '544 B');
    assert.equal(humanizeBytes(20480), '20 kB');
    assert.equal(humanizeBytes(1500), '1.5 kB');
    assert.equal(humanizeBytes(2_500_000), '2.5 MB');
  });
});
