// Member and cluster IDs, derived as etcd derives them: a member's ID is a hash of its peer URLs
// and the cluster token (so restarting a member with the same flags gives the same ID), and the
// cluster ID is a hash of its members' IDs. IDs are uint64: kept as bigint, never as a number.
import { createHash } from 'node:crypto';

function firstUint64(digest: Buffer): bigint {
  return digest.readBigUInt64BE(0);
}

export function computeMemberId(peerUrls: readonly string[], clusterToken: string, now?: number): bigint {
  const h = createHash('sha1');
  for (const u of [...peerUrls].sort()) h.update(u);
  h.update(clusterToken);
  if (now !== undefined) h.update(String(now));
  return firstUint64(h.digest());
}

export function computeClusterId(memberIds: readonly bigint[]): bigint {
  const h = createHash('sha1');
  const buf = Buffer.alloc(8);
  for (const id of [...memberIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    buf.writeBigUInt64BE(id);
    h.update(buf);
  }
  return firstUint64(h.digest());
}

/** etcd prints member IDs as lowercase hex without leading zeros. */
export function idToHex(id: bigint): string {
  return id.toString(16);
}
