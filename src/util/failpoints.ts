// Failpoints for fault-injection tests (in the spirit of etcd's gofail): when the environment
// variable QUORUMKV_FAILPOINTS names a JSON file, the member re-reads it a few times a second and
// obeys it. Without the variable every failpoint is off and costs one branch.
//
//   { "dropPeerTraffic": ["*"] }            this member neither sends to nor accepts from any peer
//   { "dropPeerTraffic": ["8e9e05c52164694d"] }   ... only to/from these members (hex IDs)
//
// A partition is injected by writing the file of the members to cut off; it heals when the file is
// emptied or removed.
import fs from 'node:fs';

const POLL_MS = 100;

interface Failpoints {
  dropPeerTraffic?: string[];
}

let current: Failpoints = {};
let started = false;

function load(file: string): void {
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    current = text === '' ? {} : (JSON.parse(text) as Failpoints);
  } catch {
    current = {};
  }
}

function ensureStarted(): void {
  if (started) return;
  started = true;
  const file = process.env.QUORUMKV_FAILPOINTS;
  if (!file) return;
  load(file);
  setInterval(() => load(file), POLL_MS).unref();
}

/** True if traffic between this member and peer `id` must be dropped. */
export function dropPeerTraffic(id: bigint): boolean {
  ensureStarted();
  const list = current.dropPeerTraffic;
  if (!list || list.length === 0) return false;
  return list.includes('*') || list.includes(id.toString(16));
}
