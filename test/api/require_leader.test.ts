// RequireLeader (src/api/require_leader.ts) with fake calls and a leader flag: what is refused at
// once, what is left alone, and when open streams are ended.
import assert from 'node:assert/strict';
import { NO_LEADER_TIMEOUTS_MAX, RequireLeader } from '../../src/api/require_leader';
import type { BidiCall, BidiListener, Status, UnaryCall } from '../../src/api/call';
import { Errors } from '../../src/util/errors';

const ELECTION_MS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fakeCall(hasleader: boolean) {
  const failed: Status[] = [];
  const call = {
    request: {},
    cancelled: false,
    failed,
    metadata: (k: string) => (k === 'hasleader' && hasleader ? 'true' : undefined),
    fail: (st: Status) => void failed.push(st),
    onAbandoned: () => undefined,
    respond: () => undefined,
    write: () => true,
    writeEncoded: () => true,
    queuedBytes: 0,
    end: () => undefined,
  };
  return call;
}

describe('RequireLeader (hasleader metadata)', () => {
  let leader = false;
  let rl: RequireLeader;
  let served = 0;
  let closedSeen = 0;
  let wrapped: Record<string, unknown>;
  const unaryCall = (hasleader: boolean) => {
    const c = fakeCall(hasleader);
    (wrapped.Range as (c: UnaryCall<never, unknown>) => void)(c as unknown as UnaryCall<never, unknown>);
    return c;
  };
  const watchCall = (hasleader: boolean) => {
    const c = fakeCall(hasleader);
    const l = (wrapped.Watch as (c: BidiCall<unknown>) => BidiListener<unknown>)(c as unknown as BidiCall<unknown>);
    return { c, l };
  };

  beforeEach(() => {
    leader = false;
    served = 0;
    closedSeen = 0;
    rl = new RequireLeader(() => leader, ELECTION_MS);
    wrapped = {
      ...rl.wrap('etcdserverpb.KV', { Range: () => void served++ }),
      ...rl.wrap('etcdserverpb.Watch', { Watch: () => ({ message: () => undefined, halfClosed: () => undefined, closed: () => void closedSeen++ }) }),
    };
  });
  afterEach(() => rl.close());

  it('before the first leader, serves hasleader requests (etcd serves nobody until it has one)', () => {
    const c = unaryCall(true);
    assert.deepEqual(c.failed, []);
    assert.equal(served, 1);
  });

  it('once the leader is lost, refuses hasleader requests and streams at once; others are served', () => {
    leader = true;
    unaryCall(true);
    leader = false;
    const refused = unaryCall(true);
    assert.deepEqual(refused.failed, [Errors.NoLeader]);
    const plain = unaryCall(false);
    assert.deepEqual(plain.failed, []);
    assert.equal(served, 2);
    const w = watchCall(true);
    assert.deepEqual(w.c.failed, [Errors.NoLeader]);
    assert.equal(rl.streamCount, 0);
  });

  it(`ends open hasleader streams after ${NO_LEADER_TIMEOUTS_MAX} election timeouts without a leader, not before, and not the others`, async () => {
    leader = true;
    const req = watchCall(true);
    const plain = watchCall(false);
    assert.equal(rl.streamCount, 1);
    leader = false;
    await sleep(ELECTION_MS * (NO_LEADER_TIMEOUTS_MAX - 1) - 5);
    assert.deepEqual(req.c.failed, []);
    await sleep(ELECTION_MS * 10);
    assert.deepEqual(req.c.failed, [Errors.NoLeader]);
    assert.deepEqual(plain.c.failed, []);
    assert.equal(rl.streamCount, 0);
  });

  it('a leader back in time resets the count; a closed stream is forgotten and its listener told', async () => {
    leader = true;
    const a = watchCall(true);
    const b = watchCall(true);
    b.l.closed!();
    assert.equal(closedSeen, 1);
    assert.equal(rl.streamCount, 1);
    leader = false;
    await sleep(ELECTION_MS * 1.5);
    leader = true;
    await sleep(ELECTION_MS * 4);
    leader = false;
    await sleep(ELECTION_MS * 1.5);
    assert.deepEqual(a.c.failed, [], 'no-leader timeouts were counted across a leader');
  });
});
