// Altering a stopped member's stored state on disk, as a bad disk or a bug would (for the
// corruption check and `quorumctl check hashes` tests).
import assert from 'node:assert/strict';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { NS_KV } from '../../src/storage/backend/records';

/** Rewrites the stored values containing `from` in place (same length) in a stopped member's
 *  backend; returns how many records changed. */
export async function rewriteValue(dataDir: string, from: string, to: string): Promise<number> {
  assert.equal(from.length, to.length);
  const db = new ClassicLevel<Buffer, Buffer>(path.join(dataDir, 'member', 'backend'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  let changed = 0;
  try {
    for await (const [k, v] of db.iterator({ gte: Buffer.from([NS_KV]), lt: Buffer.from([NS_KV + 1]) })) {
      const at = v.indexOf(from);
      if (at < 0) continue;
      const w = Buffer.from(v);
      w.write(to, at);
      await db.put(k, w);
      changed++;
    }
  } finally {
    await db.close();
  }
  return changed;
}
