// A linearizability checker for key-value histories (WGL search with Lowe's memoization, per key,
// bounded; a violation shrunk to a small sub-history). Pure: no I/O; time only through an injected
// clock. Used by `quorumctl check linearizability`; see docs/operations.md.
export { describeOp, outcomeUnknown, partitionByKey, type CasOp, type KvOp, type ReadOp, type WriteOp } from './history';
export { checkHistory, describeViolation, type CheckOptions, type CheckResult, type KeyReport } from './check';
export { minimizeViolation, type Minimized } from './minimize';
export { makeBudget, searchKey, type Budget, type Verdict } from './search';
