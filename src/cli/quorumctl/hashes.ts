// quorumctl check hashes: every member's HashKV at one revision, compared. The members come from
// MemberList (every member, not only --endpoints: a corrupt member is the one nobody lists), the
// revision is the cluster's current one read linearizably, and each member is asked for its hash at
// that revision (waiting briefly for a member that has not applied it yet). Equal compaction points
// with different hashes are a mismatch (exit 1); different compaction points make the hashes
// incomparable (exit 3: undecided), as etcd's own corruption check treats them.
import { CommandError, Connection, normalizeEndpoint, type ConnectionOptions } from './client';
import type { HeaderPb } from './format';
import { memberHex } from './format';

/** How long a member that has not applied the revision yet is waited for. */
const CATCH_UP_WAIT_MS = 5_000;
const CATCH_UP_POLL_MS = 100;

interface MemberPb {
  ID: string;
  name: string;
  clientURLs: string[];
  isLearner: boolean;
}

interface HashKVReply {
  header: HeaderPb;
  hash: number;
  compact_revision: string;
  hash_revision: string;
}

interface MemberHash {
  member: MemberPb;
  endpoint: string;
  hash?: HashKVReply;
  error?: string;
}

async function hashAt(m: MemberPb, revision: string, opts: ConnectionOptions): Promise<MemberHash> {
  const url = m.clientURLs[0];
  if (url === undefined) return { member: m, endpoint: '-', error: 'no client URL (not started yet?)' };
  const endpoint = normalizeEndpoint(url);
  let c: Connection | undefined;
  try {
    c = await Connection.openOne(endpoint, opts);
    const deadline = Date.now() + CATCH_UP_WAIT_MS;
    for (;;) {
      try {
        return { member: m, endpoint, hash: await c.unary<HashKVReply>('Maintenance', 'HashKV', { revision }) };
      } catch (e) {
        // etcd's answer for a revision this member has not applied yet: wait for it a little.
        if (!/future revision/.test((e as Error).message) || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, CATCH_UP_POLL_MS));
      }
    }
  } catch (e) {
    return { member: m, endpoint, error: (e as Error).message };
  } finally {
    c?.close();
  }
}

export async function checkHashes(endpoints: readonly string[], opts: ConnectionOptions, out: NodeJS.WritableStream): Promise<number> {
  const c = await Connection.open(endpoints, opts);
  let members: MemberPb[];
  let revision: string;
  try {
    members = (await c.unary<{ members: MemberPb[] }>('Cluster', 'MemberList', {})).members;
    // A linearizable read: its revision is committed, so every member will reach it.
    revision = (await c.unary<{ header: HeaderPb }>('KV', 'Range', { key: Buffer.from([0]), limit: 1 })).header.revision;
  } finally {
    c.close();
  }
  const rows = await Promise.all(members.map((m) => hashAt(m, revision, opts)));
  out.write(`HashKV at revision ${revision} on ${members.length} members:\n`);
  for (const r of rows) {
    const who = `${r.endpoint}, ${memberHex(r.member.ID)}${r.member.name ? ` (${r.member.name})` : ''}${r.member.isLearner ? ', learner' : ''}`;
    out.write(r.hash ? `  ${who}: hash ${r.hash.hash}, compact revision ${r.hash.compact_revision}\n` : `  ${who}: ERROR ${r.error}\n`);
  }
  const failed = rows.filter((r) => !r.hash);
  if (failed.length > 0) throw new CommandError(`${failed.length} of ${members.length} members did not answer HashKV at revision ${revision}`);
  const hashes = rows.map((r) => r.hash!);
  const compacts = new Set(hashes.map((h) => h.compact_revision));
  if (compacts.size > 1) {
    out.write(`UNDECIDED: the members' compaction points differ (${[...compacts].join(', ')}), so their hashes cover different histories; run again after the compaction has applied everywhere\n`);
    return 3;
  }
  const distinct = new Set(hashes.map((h) => h.hash));
  if (distinct.size > 1) {
    out.write(`MISMATCH: ${distinct.size} different hashes of the same revision ${revision} with the same compaction point: the members' data differ\n`);
    return 1;
  }
  out.write(`OK: every member has hash ${hashes[0]!.hash} at revision ${revision}\n`);
  return 0;
}
