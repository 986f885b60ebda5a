import assert from 'node:assert/strict';
import { checkPut, checkRange, checkTxn } from '../../src/api/validate';
import { Errors } from '../../src/util/errors';
import type { PutRequest, RangeRequest, RequestOp, TxnRequest } from '../../src/proto/types';

const B = (s: string) => Buffer.from(s);
const put = (k: string): RequestOp => ({ request_put: { key: B(k), value: B('v'), lease: '0', prev_kv: false, ignore_value: false, ignore_lease: false } });
const del = (k: string, end = ''): RequestOp => ({ request_delete_range: { key: B(k), range_end: B(end), prev_kv: false } });
const txn = (success: RequestOp[], failure: RequestOp[] = []): TxnRequest => ({ compare: [], success, failure });
const range = (over: Partial<RangeRequest> = {}): RangeRequest => ({
  key: B('k'), range_end: B(''), limit: '0', revision: '0', sort_order: 0, sort_target: 0, serializable: false, keys_only: false,
  count_only: false, min_mod_revision: '0', max_mod_revision: '0', min_create_revision: '0', max_create_revision: '0', ...over,
});

describe('request validation (etcd api/v3rpc/key.go rules)', () => {
  it('empty keys are rejected', () => {
    assert.equal(checkRange(range({ key: B('') })), Errors.EmptyKey);
    assert.equal(checkPut({ ...put('x').request_put!, key: B('') } as PutRequest), Errors.EmptyKey);
  });
  it('invalid sort options are rejected', () => {
    assert.equal(checkRange(range({ sort_order: 7 })), Errors.InvalidSortOption);
    assert.equal(checkRange(range({ sort_target: 9 })), Errors.InvalidSortOption);
    assert.equal(checkRange(range({ sort_order: 2, sort_target: 4 })), undefined);
  });
  it('ignore_value with a value, ignore_lease with a lease', () => {
    assert.equal(checkPut({ ...put('x').request_put!, ignore_value: true }), Errors.ValueProvided);
    assert.equal(checkPut({ ...put('x').request_put!, value: B(''), ignore_lease: true, lease: '5' }), Errors.LeaseProvided);
  });
  it('txn op count limit', () => {
    const ops = Array.from({ length: 129 }, (_, i) => put(`k${i}`));
    assert.equal(checkTxn(txn(ops), 128), Errors.TooManyOps);
    assert.equal(checkTxn(txn(ops.slice(0, 128)), 128), undefined);
  });
  it('duplicate keys: put+put, put inside a deleted range, across nested txns', () => {
    assert.equal(checkTxn(txn([put('a'), put('a')]), 128), Errors.DuplicateKey);
    assert.equal(checkTxn(txn([del('a', 'c'), put('b')]), 128), Errors.DuplicateKey);
    assert.equal(checkTxn(txn([del('a', '\0'), put('zzz')]), 128), Errors.DuplicateKey);
    assert.equal(checkTxn(txn([del('a', 'c'), put('c')]), 128), undefined);
    assert.equal(checkTxn(txn([del('a'), del('a')]), 128), undefined, 'two deletes of one key are fine');
    assert.equal(checkTxn(txn([put('a')], [put('a')]), 128), undefined, 'success and failure exclude each other');
    const nested: RequestOp = { request_txn: txn([put('n')], [put('n')]) };
    assert.equal(checkTxn(txn([nested]), 128), undefined);
    assert.equal(checkTxn(txn([nested, put('n')]), 128), Errors.DuplicateKey);
    assert.equal(checkTxn(txn([{ request_txn: txn([put('q')]) }, { request_txn: txn([put('q')]) }]), 128), Errors.DuplicateKey);
  });
});
