// How a failed request becomes its call's status (src/api/errors.ts): etcd's errors as they are,
// other exceptions INTERNAL with their cause kept for the log, and assertion failures never.
import assert from 'node:assert/strict';
import { internalStatus, replyError, toStatus } from '../../src/api/errors';
import type { CallBase, Status } from '../../src/api/call';
import { AssertionError, assert as invariant } from '../../src/util/assert';
import { Errors, GrpcCode } from '../../src/util/errors';

function recordingCall(): CallBase & { failed: Status[] } {
  const failed: Status[] = [];
  return { failed, cancelled: false, metadata: () => undefined, fail: (st) => void failed.push(st), onAbandoned: () => undefined };
}

describe('api errors → call statuses', () => {
  it('answers an EtcdError with its own code and message', () => {
    const call = recordingCall();
    replyError(call, Errors.Compacted);
    assert.equal(call.failed[0], Errors.Compacted);
    assert.deepEqual([call.failed[0]!.code, call.failed[0]!.message], [GrpcCode.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted']);
  });

  it('answers an unexpected exception INTERNAL, keeping it as the cause (logged by the transport)', () => {
    const err = new Error('backend closed');
    const st = toStatus(err);
    assert.deepEqual([st.code, st.message, st.cause], [GrpcCode.INTERNAL, 'quorumkv: internal error: backend closed', err]);
    assert.equal(internalStatus('quorumkv: snapshot failed', 'eio').message, 'quorumkv: snapshot failed: eio');
  });

  it('never answers an assertion failure: it is thrown on, so that the member crashes', () => {
    const call = recordingCall();
    let thrown: unknown;
    try {
      invariant(false, 'applied index went backwards');
    } catch (err) {
      thrown = err;
    }
    assert.ok(thrown instanceof AssertionError);
    assert.throws(() => replyError(call, thrown), AssertionError);
    assert.throws(() => toStatus(thrown), AssertionError);
    assert.throws(() => internalStatus('x', thrown), AssertionError);
    assert.equal(call.failed.length, 0);
  });
});
