// The lessor with a fake clock: grant/revoke/checkpoint as applied entries, expiry decided only by
// the primary, keepalive, promotion honouring checkpoints, and the runner turning expiry and
// checkpoints into proposals.
import { strict as assert } from 'node:assert';
import { MvccStore, EventType } from '../../src/mvcc';
import { Errors, EtcdError } from '../../src/util/errors';
import { Lessor, LeaseRunner, EXPIRED_RETRY_MS, minLeaseTtlSec, type LeaseProposal } from '../../src/lease';
import { b, s, put } from '../mvcc/helpers';

function setup(checkpointIntervalMs = 0) {
  const clock = { ms: 1_000_000 };
  const lessor = new Lessor({ minTtlSec: 2, checkpointIntervalMs, now: () => clock.ms });
  return { clock, lessor };
}

const isErr = (v: unknown, e: EtcdError) => v === e;

describe('lessor: applied lease state', () => {
  it('minimum TTL is ceil(1.5 × election timeout): 2 s for etcd\'s default 1000 ms', () => {
    assert.equal(minLeaseTtlSec(1000), 2);
    assert.equal(minLeaseTtlSec(1500), 3);
    assert.equal(minLeaseTtlSec(100), 1);
  });

  it('grant raises small TTLs, rejects duplicates, ID 0 and huge TTLs', () => {
    const { lessor } = setup();
    assert.deepEqual(lessor.grant(5n, 1), { id: 5n, ttlSec: 2 });
    assert.deepEqual(lessor.grant(6n, 60), { id: 6n, ttlSec: 60 });
    assert.ok(isErr(lessor.grant(5n, 60), Errors.LeaseExist));
    assert.ok(isErr(lessor.grant(0n, 60), Errors.LeaseNotFound));
    assert.ok(isErr(lessor.grant(7n, 9_000_000_001), Errors.LeaseTTLTooLarge));
    assert.deepEqual(lessor.leaseIds(), [5n, 6n]);
  });

  it('revoke deletes every attached key in one revision, in key order; unknown lease is not found', () => {
    const { lessor } = setup();
    const store = new MvccStore();
    lessor.grant(9n, 60);
    for (const k of ['c', 'a', 'b']) {
      put(store, k, 'v', 9n);
      lessor.attach(9n, b(k));
    }
    put(store, 'other', 'v');
    const txn = store.write();
    assert.equal(lessor.revoke(9n, txn), undefined);
    const res = txn.end();
    assert.deepEqual(res.events.map((e) => `${e.type === EventType.DELETE ? 'D' : 'P'}${s(e.kv.key)}@${e.kv.modRevision}`), ['Da@6', 'Db@6', 'Dc@6']);
    assert.equal(lessor.exists(9n), false);
    const txn2 = store.write();
    assert.ok(isErr(lessor.revoke(9n, txn2), Errors.LeaseNotFound));
    assert.equal(txn2.end().events.length, 0);
  });

  it('detach removes a key from its lease (overwritten without the lease, or deleted)', () => {
    const { lessor } = setup();
    lessor.grant(1n, 60);
    lessor.attach(1n, b('x'));
    lessor.attach(1n, b('y'));
    lessor.detach(1n, b('x'));
    assert.deepEqual(lessor.timeToLive(1n, true)!.keys.map(s), ['y']);
  });
});

describe('lessor: expiry on the primary only', () => {
  it('a non-primary never expires a lease, whatever its clock says', () => {
    const { clock, lessor } = setup();
    lessor.grant(1n, 5);
    clock.ms += 3_600_000;
    assert.deepEqual(lessor.expired(10), []);
    assert.ok(isErr(lessor.renew(1n), Errors.NotLeader));
  });

  it('the primary expires a lease after its TTL, hands it out once per retry interval', () => {
    const { clock, lessor } = setup();
    lessor.promote(0);
    lessor.grant(1n, 5);
    clock.ms += 4_999;
    assert.deepEqual(lessor.expired(10), []);
    clock.ms += 1;
    assert.deepEqual(lessor.expired(10), [1n]);
    assert.deepEqual(lessor.expired(10), [], 'not handed out twice while its revoke is in flight');
    clock.ms += EXPIRED_RETRY_MS;
    assert.deepEqual(lessor.expired(10), [1n], 'retried if the revoke never applied');
    assert.ok(isErr(lessor.renew(1n), Errors.LeaseNotFound), 'an expired lease cannot be kept alive');
  });

  it('keepalive restarts the full TTL; timeToLive reports remaining and granted TTL', () => {
    const { clock, lessor } = setup();
    lessor.promote(0);
    lessor.grant(1n, 10);
    clock.ms += 7_000;
    assert.equal(lessor.timeToLive(1n, false)!.ttlSec, 3);
    assert.deepEqual(lessor.renew(1n), { ttlSec: 10, clearCheckpoint: false });
    clock.ms += 9_000;
    assert.deepEqual(lessor.expired(10), []);
    assert.deepEqual(lessor.timeToLive(1n, false), { id: 1n, ttlSec: 1, grantedTtlSec: 10, keys: [] });
    clock.ms += 1_000;
    assert.deepEqual(lessor.expired(10), [1n]);
    assert.equal(lessor.timeToLive(2n, false), undefined);
  });

  it('expiry is bounded per call and ordered by expiry time', () => {
    const { clock, lessor } = setup();
    lessor.promote(0);
    for (let i = 1; i <= 10; i++) lessor.grant(BigInt(i), 20 - i);
    clock.ms += 60_000;
    assert.deepEqual(lessor.expired(3), [10n, 9n, 8n]);
    assert.equal(lessor.expired(100).length, 7);
  });

  it('demotion stops expiry; promotion gives every lease a fresh TTL plus the extension', () => {
    const { clock, lessor } = setup();
    lessor.promote(0);
    lessor.grant(1n, 10);
    clock.ms += 8_000;
    lessor.demote();
    clock.ms += 100_000;
    assert.deepEqual(lessor.expired(10), []);
    lessor.promote(1_000);
    clock.ms += 10_999;
    assert.deepEqual(lessor.expired(10), []);
    clock.ms += 1;
    assert.deepEqual(lessor.expired(10), [1n]);
  });
});

describe('lessor: checkpoints (remaining TTL survives a leader change)', () => {
  it('long leases get a checkpoint per interval; promotion uses the checkpointed remaining TTL', () => {
    const { clock, lessor } = setup(60_000);
    lessor.promote(0);
    lessor.grant(1n, 600); // 10 min
    lessor.grant(2n, 30); // shorter than the interval: never checkpointed
    clock.ms += 59_999;
    assert.deepEqual(lessor.dueCheckpoints(10), []);
    clock.ms += 1;
    const cps = lessor.dueCheckpoints(10);
    assert.deepEqual(cps, [{ id: 1n, remainingTtlSec: 540 }]);
    lessor.checkpoint(cps); // applied through the log
    // Leadership moves away and comes back 100 s later: the lease must not get its full 600 s
    // again (that would extend it), nor expire early.
    lessor.demote();
    clock.ms += 100_000;
    lessor.promote(1_000);
    assert.equal(lessor.timeToLive(1n, false)!.ttlSec, 541);
    clock.ms += 540_999;
    assert.deepEqual(lessor.expired(10), [2n], 'the short lease had no checkpoint: full TTL after promotion');
    clock.ms += 1;
    assert.deepEqual(lessor.expired(10), [1n]);
  });

  it('a keepalive clears a checkpoint (the runner logs remaining_TTL 0)', async () => {
    const { clock, lessor } = setup(60_000);
    const proposed: LeaseProposal[] = [];
    const runner = new LeaseRunner(lessor, { isLeader: () => true, propose: async (p) => void proposed.push(p) });
    lessor.promote(0);
    lessor.grant(1n, 600);
    clock.ms += 60_000;
    runner.check();
    assert.deepEqual(proposed, [{ lease_checkpoint: { checkpoints: [{ ID: '1', remaining_TTL: 540 }] } }]);
    lessor.checkpoint([{ id: 1n, remainingTtlSec: 540 }]);
    assert.equal(runner.renew(1n), 600);
    assert.deepEqual(proposed[1], { lease_checkpoint: { checkpoints: [{ ID: '1', remaining_TTL: 0 }] } });
    lessor.checkpoint([{ id: 1n, remainingTtlSec: 0 }]);
    lessor.demote();
    lessor.promote(0);
    assert.equal(lessor.timeToLive(1n, false)!.ttlSec, 600);
  });

  it('the runner proposes revokes for expired leases, and nothing when not leader', () => {
    const { clock, lessor } = setup();
    const proposed: LeaseProposal[] = [];
    let leader = false;
    const runner = new LeaseRunner(lessor, { isLeader: () => leader, propose: async (p) => void proposed.push(p) });
    lessor.grant(7n, 2);
    clock.ms += 10_000;
    runner.check();
    assert.deepEqual(proposed, []);
    leader = true;
    lessor.promote(0);
    runner.check();
    assert.deepEqual(proposed, []);
    clock.ms += 2_000;
    runner.check();
    assert.deepEqual(proposed, [{ lease_revoke: { ID: '7' } }]);
  });
});
