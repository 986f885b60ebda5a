// The commands of a golden trace (after etcd-io/raft's rafttest handlers). Each takes its
// arguments from the command line and returns the output to compare with the file.
//
//   add-nodes N [voters=(1,2,3)] [learners=(4)] [index=I] [prevote=true] [checkquorum=true]
//             [inflight=N] [max-size-per-msg=B] [max-uncommitted-size=B] [read-only=lease-based]
//       Adds N nodes with the next ids. With voters/learners, each starts from a snapshot at index
//       I (default 1), term 1, with that configuration and term 0; without, from an empty log (a
//       member added later). electionTick=3, heartbeatTick=1; pre-vote and check-quorum are OFF
//       unless asked for (as in etcd's add-nodes). Seeds are fixed: node i uses seed i.
//   campaign ID                    ID campaigns now (pre-vote first if enabled)
//   propose ID DATA                ID proposes DATA (a follower forwards it)
//   propose-conf-change ID CC      CC is v<id> (add or promote a voter), l<id> (learner), r<id> (remove)
//   read-index ID CTX              ID asks for a read index for CTX
//   transfer-leadership from=A to=B   A's leader transfers leadership to B
//   tick-heartbeat ID              heartbeatTick ticks
//   tick-election ID               one election timeout: electionTick ticks for a leader; for the
//                                  others, ticks until their randomized timeout expires (so a
//                                  promotable follower reliably campaigns)
//   tick ID N                      exactly N ticks
//   set-randomized-election-timeout ID timeout=T
//   process-ready ID...            handle one Ready of each ID (persist, apply, send, advance)
//   deliver-msgs [ID...] [drop=(ID,...)] [type=MsgApp]   deliver (or drop) queued messages per recipient
//   stabilize [ID...]              process Readys and deliver messages until quiescent (bounded)
//   isolate ID / heal              drop every message from or to ID on delivery / stop dropping
//   compact ID INDEX               snapshot ID's state machine at INDEX and discard the log up to it
//   report-unreachable ID PEER     ID's transport reports PEER unreachable
//   status ID / raft-log ID / raft-state / log-level none|info|debug

import { MemoryStorage, MessageType, StateRole } from '../../../src/raft';
import type { Config, NodeId, ReadOnlyOption, Snapshot } from '../../../src/raft';
import type { Arg, Case } from './datadriven';
import { parseConfChange } from './describe';
import { configString, InteractionEnv } from './env';
import type { LogLevel } from './env';

export const ELECTION_TICK = 3;
export const HEARTBEAT_TICK = 1;

/** A mistake in the scenario file itself (not something raft did): fails the test. */
export class ScenarioError extends Error {
  override name = 'ScenarioError';
}

function fail(msg: string): never {
  throw new ScenarioError(msg);
}

function parseId(s: string | undefined, what = 'node id'): NodeId {
  if (s === undefined || !/^\d+$/.test(s)) fail(`expected a ${what}, got ${JSON.stringify(s)}`);
  return BigInt(s);
}

function parseInt10(s: string | undefined, what: string): number {
  if (s === undefined || !/^\d+$/.test(s)) fail(`expected ${what} as a number, got ${JSON.stringify(s)}`);
  return Number(s);
}

function parseBool(s: string | undefined, what: string): boolean {
  if (s !== 'true' && s !== 'false') fail(`expected ${what}=true|false, got ${JSON.stringify(s)}`);
  return s === 'true';
}

/** Bare arguments (no '='): ids and the like. */
function positional(args: Arg[]): string[] {
  return args.filter((a) => a.vals.length === 0 && !a.key.includes('=')).map((a) => a.key);
}

function named(args: Arg[], key: string): string[] | undefined {
  return args.find((a) => a.key === key && a.vals.length > 0)?.vals;
}

function one(args: Arg[], key: string): string | undefined {
  const v = named(args, key);
  if (v !== undefined && v.length !== 1) fail(`${key} takes one value`);
  return v?.[0];
}

function checkKeys(c: Case, allowed: string[]): void {
  for (const a of c.args) {
    if (a.vals.length > 0 && !allowed.includes(a.key)) fail(`${c.cmd}: unknown argument ${a.key} (known: ${allowed.join(', ') || 'none'})`);
  }
}

function idsOf(c: Case, env: InteractionEnv, atLeastOne: boolean): NodeId[] {
  const ids = positional(c.args).map((s) => parseId(s));
  if (atLeastOne && ids.length === 0) fail(`${c.cmd}: which node?`);
  for (const id of ids) env.node(id); // must exist
  return ids;
}

function singleId(c: Case, env: InteractionEnv): NodeId {
  const ids = idsOf(c, env, true);
  if (ids.length !== 1) fail(`${c.cmd} takes one node id`);
  return ids[0]!;
}

function addNodes(env: InteractionEnv, c: Case): void {
  checkKeys(c, ['voters', 'learners', 'index', 'prevote', 'checkquorum', 'inflight', 'max-size-per-msg', 'max-uncommitted-size', 'read-only']);
  const [countStr] = positional(c.args);
  const count = parseInt10(countStr, 'the number of nodes');
  const voters = (named(c.args, 'voters') ?? []).map((s) => parseId(s, 'voter id'));
  const learners = (named(c.args, 'learners') ?? []).map((s) => parseId(s, 'learner id'));
  const bootstrap = voters.length > 0 || learners.length > 0;
  const indexStr = one(c.args, 'index');
  if (!bootstrap && indexStr !== undefined) fail('index= needs voters= or learners=');
  const index = indexStr === undefined ? 1 : parseInt10(indexStr, 'index');
  if (index < 1) fail('index must be >= 1');
  const extra: Partial<Config> = {};
  const opt = (key: string, f: (v: string) => void): void => {
    const v = one(c.args, key);
    if (v !== undefined) f(v);
  };
  extra.preVote = false;
  extra.checkQuorum = false;
  opt('prevote', (v) => (extra.preVote = parseBool(v, 'prevote')));
  opt('checkquorum', (v) => (extra.checkQuorum = parseBool(v, 'checkquorum')));
  opt('inflight', (v) => (extra.maxInflightMsgs = parseInt10(v, 'inflight')));
  opt('max-size-per-msg', (v) => (extra.maxSizePerMsg = parseInt10(v, 'max-size-per-msg')));
  opt('max-uncommitted-size', (v) => (extra.maxUncommittedEntriesSize = parseInt10(v, 'max-uncommitted-size')));
  opt('read-only', (v) => {
    if (v !== 'safe' && v !== 'lease-based') fail(`read-only=safe|lease-based, got ${v}`);
    extra.readOnlyOption = v as ReadOnlyOption;
  });
  for (let k = 0; k < count; k++) {
    const id = BigInt(env.nodes.size + 1);
    const base: Snapshot = {
      data: new Uint8Array(0),
      metadata: { index: bootstrap ? index : 0, term: bootstrap ? 1 : 0, confState: { voters: [...voters], learners: [...learners] } },
    };
    const storage = new MemoryStorage();
    if (bootstrap) storage.applySnapshot(base);
    const config: Config = {
      id,
      electionTick: ELECTION_TICK,
      heartbeatTick: HEARTBEAT_TICK,
      seed: Number(id),
      ...(bootstrap ? { applied: index } : {}),
      ...extra,
    };
    env.addNode(config, storage, base);
  }
}

function tickElection(env: InteractionEnv, id: NodeId): void {
  const n = env.node(id);
  const r = n.raw.raft;
  // A leader's election timeout is the fixed check-quorum interval; everyone else's is randomized.
  const ticks = r.state === StateRole.Leader ? ELECTION_TICK : Math.max(1, r.randomizedElectionTimeout - r.electionElapsed);
  env.call(n, () => {
    for (let k = 0; k < ticks; k++) n.raw.tick();
  });
}

function deliverMsgs(env: InteractionEnv, c: Case): void {
  checkKeys(c, ['drop', 'type']);
  const recipients = idsOf(c, env, false).map((id) => ({ id, drop: false }));
  for (const s of named(c.args, 'drop') ?? []) {
    const id = parseId(s);
    if (recipients.some((r) => r.id === id)) fail(`cannot both deliver and drop messages to ${id}`);
    recipients.push({ id, drop: true });
  }
  if (recipients.length === 0) for (const id of env.ids()) recipients.push({ id, drop: false });
  const typeName = one(c.args, 'type');
  let type: number | undefined;
  if (typeName !== undefined) {
    type = (MessageType as unknown as Record<string, number>)[typeName];
    if (type === undefined) fail(`unknown message type ${typeName}`);
  }
  if (env.deliverMsgs(recipients, type) === 0) env.write('no messages');
}

function compact(env: InteractionEnv, c: Case): void {
  const [idStr, indexStr] = positional(c.args);
  const n = env.node(parseId(idStr));
  const index = parseInt10(indexStr, 'the compaction index');
  if (index > n.raw.raft.raftLog.applied) fail(`compact ${n.id} ${index}: only applied entries can be compacted (applied=${n.raw.raft.raftLog.applied})`);
  const st = env.stateAt(n, index);
  if (st === undefined) fail(`compact ${n.id} ${index}: no state machine at ${index}`);
  n.storage.createSnapshot(index, st.metadata.confState, st.data); // 'out-of-date' if one exists at >= index
  if (n.storage.compact(index) !== null) fail(`compact ${n.id} ${index}: already compacted`);
  env.write(env.describeLog(n).join('\n'));
}

/** Runs one command against env and returns its output. */
export function handle(env: InteractionEnv, c: Case): string {
  if (c.input.length > 0) fail(`${c.cmd} takes no input lines (missing '----' after the command?)`);
  switch (c.cmd) {
    case 'add-nodes':
      addNodes(env, c);
      break;
    case 'campaign': {
      const n = env.node(singleId(c, env));
      env.call(n, () => n.raw.campaign());
      break;
    }
    case 'propose': {
      const [idStr, data, ...rest] = positional(c.args);
      if (data === undefined || rest.length > 0) fail('propose ID DATA');
      const n = env.node(parseId(idStr));
      env.callErr(n, () => n.raw.propose(Buffer.from(data)));
      break;
    }
    case 'propose-conf-change': {
      const [idStr, ...ccs] = positional(c.args);
      if (ccs.length !== 1) fail('propose-conf-change ID CC: exactly one change (joint consensus is not implemented)');
      const n = env.node(parseId(idStr));
      env.callErr(n, () => n.raw.proposeConfChange(parseConfChange(ccs[0]!)));
      break;
    }
    case 'read-index': {
      const [idStr, ctx, ...rest] = positional(c.args);
      if (ctx === undefined || rest.length > 0) fail('read-index ID CTX');
      const n = env.node(parseId(idStr));
      env.call(n, () => n.raw.readIndex(Buffer.from(ctx)));
      break;
    }
    case 'transfer-leadership': {
      checkKeys(c, ['from', 'to']);
      const n = env.node(parseId(one(c.args, 'from'), 'from='));
      const to = parseId(one(c.args, 'to'), 'to=');
      env.call(n, () => n.raw.transferLeader(to));
      break;
    }
    case 'tick-heartbeat': {
      const n = env.node(singleId(c, env));
      env.call(n, () => {
        for (let k = 0; k < HEARTBEAT_TICK; k++) n.raw.tick();
      });
      break;
    }
    case 'tick-election':
      tickElection(env, singleId(c, env));
      break;
    case 'tick': {
      const [idStr, countStr] = positional(c.args);
      const n = env.node(parseId(idStr));
      const count = parseInt10(countStr, 'the number of ticks');
      env.call(n, () => {
        for (let k = 0; k < count; k++) n.raw.tick();
      });
      break;
    }
    case 'set-randomized-election-timeout': {
      checkKeys(c, ['timeout']);
      const n = env.node(singleId(c, env));
      const t = parseInt10(one(c.args, 'timeout'), 'timeout');
      if (t < ELECTION_TICK) fail(`timeout must be >= electionTick (${ELECTION_TICK})`);
      n.raw.raft.randomizedElectionTimeout = t;
      break;
    }
    case 'process-ready': {
      const ids = idsOf(c, env, true);
      for (const id of ids) {
        if (ids.length === 1) {
          env.processReady(id);
          continue;
        }
        env.write(`> ${id} handling Ready`);
        env.withIndent(() => env.processReady(id));
      }
      break;
    }
    case 'deliver-msgs':
      deliverMsgs(env, c);
      break;
    case 'stabilize': {
      const ids = idsOf(c, env, false);
      env.stabilize(ids.length > 0 ? ids : env.ids());
      break;
    }
    case 'isolate':
      env.isolated.add(singleId(c, env));
      break;
    case 'heal':
      env.isolated.clear();
      break;
    case 'compact':
      compact(env, c);
      break;
    case 'report-unreachable': {
      const [idStr, peerStr] = positional(c.args);
      const n = env.node(parseId(idStr));
      const peer = parseId(peerStr, 'peer id');
      env.call(n, () => n.raw.reportUnreachable(peer));
      break;
    }
    case 'status':
      env.write(env.describeStatus(env.node(singleId(c, env))).join('\n'));
      break;
    case 'raft-log':
      env.write(env.describeLog(env.node(singleId(c, env))).join('\n'));
      break;
    case 'raft-state':
      for (const id of env.ids()) {
        const r = env.node(id).raw.raft;
        const kind = r.trk.voters.has(id) ? 'Voter' : r.trk.learners.has(id) ? 'Learner' : 'Non-member';
        env.write(`${id}: State${r.state} (${kind}) Term:${r.term} Lead:${r.lead} ${configString(r.trk.confState())}`);
      }
      break;
    case 'log-level': {
      const [lvl] = positional(c.args);
      if (lvl !== 'none' && lvl !== 'info' && lvl !== 'debug') fail('log-level none|info|debug');
      env.level = lvl as LogLevel;
      break;
    }
    default:
      fail(`unknown command ${c.cmd}`);
  }
  return env.takeOutput();
}
