// etcdserverpb.Cluster: the member list, and membership changes through Raft (one at a time) with
// etcd's checks and errors.
import { isLearnerReady } from '../server/learner_promoter';
import * as grpc from '@grpc/grpc-js';
import { Errors } from '../util/errors';
import { computeMemberId } from '../util/ids';
import { ConfChangeType } from '../raft';
import type { Server } from '../server/server';
import type { Member } from '../server/membership';
import type { RaftNode } from '../server/raft_node';
import { serviceDefinition } from '../proto';
import type { MemberAddRequest, MemberIdRequest, MemberListRequest, MemberPb, MemberUpdateRequest, MembersResponse } from '../proto/types';
import { replyError } from './errors';
import type { CallBase, UnaryCall, UnaryHandler } from './call';
import { authorize, checks } from './auth_service';
import { EtcdError } from '../util/errors';

/** etcd allows one learner at a time (cluster_opts.go). */
const LEARNERS_MAX = 1;
/** How long MemberList waits for a ReadIndex round before answering from the local state. */
const MEMBER_LIST_READ_WAIT_MS = 1000;

export interface ClusterServiceOptions {
  clusterToken: string;
  raftNode: RaftNode;
  /** Whether a member is reachable right now (leader's view plus a live peer stream). */
  isActive: (id: bigint) => boolean;
  /** Credentials for dialing the leader's client URL (https needs TLS; default insecure). */
  credentialsFor?: (clientUrl: string) => grpc.ChannelCredentials;
}

function memberPb(m: Member): MemberPb {
  return { ID: m.id.toString(), name: m.name, peerURLs: m.peerURLs, clientURLs: m.clientURLs, isLearner: m.isLearner };
}

function validUrls(urls: readonly string[]): boolean {
  if (urls.length === 0) return false;
  for (const u of urls) {
    try {
      const p = new URL(u);
      if ((p.protocol !== 'http:' && p.protocol !== 'https:') || p.port === '' || p.hostname === '' || (p.pathname !== '/' && p.pathname !== '')) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** etcd's checkMembershipOperationPermission: membership changes need root when auth is on. Answers
 *  the call and returns true when the caller may not. */
function deniedMembershipChange(server: Server, call: CallBase): boolean {
  const who = authorize(server, call, checks.admin, undefined);
  if (!(who instanceof EtcdError)) return false;
  replyError(call, who);
  return true;
}

export function clusterService(server: Server, o: ClusterServiceOptions) {
  /** etcd 3.4's Cluster answers carry no revision (its ClusterServer header has none); a zero
   *  revision is left off the wire and out of the JSON. */
  const clusterHeader = () => server.header(0);
  const members = () => server.membership.list().map(memberPb);
  const voters = () => server.membership.list().filter((m) => !m.isLearner);
  /** Voters known to have started: they published their name (etcd counts connected peers). */
  const started = () => voters().filter((m) => m.name !== '');

  const MemberList: UnaryHandler<MemberListRequest, MembersResponse> = (call) => {
    const reply = () => (server.isStopped ? replyError(call, Errors.Stopped) : call.respond({ header: clusterHeader(), members: members() }));
    if (call.request.linearizable) return void server.linearizableRead().then(reply, (err) => replyError(call, err));
    // etcd 3.4 serves the list locally. We first try a short ReadIndex round so a client that just
    // changed the membership through another member sees its change here too; without a quorum
    // (an operator diagnosing a broken cluster) the local list is served anyway.
    let done = false;
    const once = () => {
      if (done) return;
      done = true;
      clearTimeout(t);
      reply();
    };
    const t = setTimeout(once, MEMBER_LIST_READ_WAIT_MS);
    server.linearizableRead().then(once, once);
  };

  const MemberAdd: UnaryHandler<MemberAddRequest, MembersResponse> = (call) => {
    const { peerURLs, isLearner } = call.request;
    // As etcd: the URLs are parsed (v3rpc) before the permission check (EtcdServer.AddMember).
    if (!validUrls(peerURLs)) return replyError(call, Errors.MemberBadURLs);
    if (deniedMembershipChange(server, call)) return;
    if (server.membership.byPeerURL(peerURLs)) return replyError(call, Errors.PeerURLExist);
    if (isLearner && server.membership.list().filter((m) => m.isLearner).length >= LEARNERS_MAX) return replyError(call, Errors.TooManyLearners);
    if (!isLearner) {
      // Adding a voter that is not running yet raises the quorum: refuse it when the members
      // that have started would no longer be a quorum (etcd's strict reconfiguration check).
      const n = voters().length + 1;
      if (started().length < Math.floor(n / 2) + 1) return replyError(call, Errors.MemberNotEnoughStarted);
    }
    // etcd also wants every voter reachable right now; only the leader knows who is.
    if (!server.isLeader()) return forwardToLeader(server, o, 'MemberAdd', call);
    if (!voters().every((v) => o.isActive(v.id))) return replyError(call, Errors.Unhealthy);
    const member: Member = { id: computeMemberId(peerURLs, o.clusterToken, Date.now()), name: '', peerURLs: [...peerURLs].sort(), clientURLs: [], isLearner };
    if (server.membership.get(member.id) || server.membership.removed.has(member.id)) return replyError(call, Errors.MemberExist);
    server.proposeMemberChange(isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode, member).then(
      () => call.respond({ header: clusterHeader(), member: memberPb(member), members: members() }),
      (err) => replyError(call, err),
    );
  };

  const MemberRemove: UnaryHandler<MemberIdRequest, MembersResponse> = (call) => {
    if (deniedMembershipChange(server, call)) return;
    const id = BigInt(call.request.ID);
    const m = server.membership.get(id);
    if (!m) return replyError(call, server.membership.removed.has(id) ? Errors.MemberNotFound : Errors.MemberNotFound);
    if (!m.isLearner) {
      const remaining = voters().filter((v) => v.id !== id);
      if (remaining.length === 0) return replyError(call, Errors.MemberNotEnoughStarted);
      const up = started().filter((v) => v.id !== id).length;
      if (up < Math.floor(remaining.length / 2) + 1) return replyError(call, Errors.MemberNotEnoughStarted);
      // etcd: removing a member that is down is always safe; removing a live one must leave a
      // quorum of the live members. Only the leader knows who is live.
      if (!server.isLeader()) return forwardToLeader(server, o, 'MemberRemove', call);
      if (id === server.memberId || o.isActive(id)) {
        const active = voters().filter((v) => o.isActive(v.id)).length;
        if (active - 1 < Math.floor((voters().length - 1) / 2) + 1) return replyError(call, Errors.Unhealthy);
      }
    }
    server.proposeMemberChange(ConfChangeType.RemoveNode, m).then(
      () => call.respond({ header: clusterHeader(), members: members() }),
      (err) => replyError(call, err),
    );
  };

  const MemberUpdate: UnaryHandler<MemberUpdateRequest, MembersResponse> = (call) => {
    const id = BigInt(call.request.ID);
    if (!validUrls(call.request.peerURLs)) return replyError(call, Errors.MemberBadURLs);
    if (deniedMembershipChange(server, call)) return;
    if (!server.membership.get(id)) return replyError(call, Errors.MemberNotFound);
    const other = server.membership.byPeerURL(call.request.peerURLs);
    if (other && other.id !== id) return replyError(call, Errors.PeerURLExist);
    server.propose({ member_update: { ID: id.toString(), peerURLs: [...call.request.peerURLs].sort() } }).then(
      () => call.respond({ header: clusterHeader(), members: members() }),
      (err) => replyError(call, err),
    );
  };

  const MemberPromote: UnaryHandler<MemberIdRequest, MembersResponse> = (call) => {
    if (deniedMembershipChange(server, call)) return;
    const id = BigInt(call.request.ID);
    const m = server.membership.get(id);
    if (!m) return replyError(call, Errors.MemberNotFound);
    if (!m.isLearner) return replyError(call, Errors.MemberNotLearner);
    if (!server.isLeader()) return forwardToLeader(server, o, 'MemberPromote', call);
    // Only the leader knows how far the learner has come.
    const match = o.raftNode.matchIndex(id) ?? 0;
    const last = server.raftStatus().lastIndex;
    if (!isLearnerReady(match, last)) return replyError(call, Errors.LearnerNotReady);
    server.proposeMemberChange(ConfChangeType.AddNode, { ...m, isLearner: false }).then(
      () => call.respond({ header: clusterHeader(), members: members() }),
      (err) => replyError(call, err),
    );
  };

  return { MemberList, MemberAdd, MemberRemove, MemberUpdate, MemberPromote };
}

/** Sends a Cluster request to the leader's client URL (the check needs the leader's view). */
function forwardToLeader(server: Server, o: ClusterServiceOptions, method: string, call: UnaryCall<object, MembersResponse>): void {
  const leader = server.membership.get(server.raftStatus().leader);
  const url = leader?.clientURLs[0];
  if (!leader || !url) return replyError(call, Errors.NoLeader);
  const u = new URL(url);
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition('etcdserverpb.Cluster'), 'Cluster');
  let creds: grpc.ChannelCredentials;
  try {
    creds = o.credentialsFor?.(url) ?? grpc.credentials.createInsecure();
  } catch (err) {
    return call.fail({ code: grpc.status.UNAVAILABLE, message: (err as Error).message });
  }
  const client = new Ctor(`${u.hostname}:${u.port}`, creds) as unknown as Record<string, (...args: unknown[]) => unknown> & { close(): void };
  // The caller's token goes along: the leader checks the caller's permission again.
  const md = new grpc.Metadata();
  for (const k of ['token', 'authorization']) {
    const v = call.metadata(k);
    if (v !== undefined) md.set(k, v);
  }
  client[method]!(call.request, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: MembersResponse) => {
    client.close();
    // The leader's status, as it sent it.
    if (err) return call.fail({ code: err.code, message: err.details });
    // The leader answered once it applied the change; catch up (briefly) before answering, so
    // that a client reading this member next sees its own change. Bounded: a member that was just
    // removed by this very request can no longer complete a ReadIndex round.
    let done = false;
    const answer = () => {
      if (done) return;
      done = true;
      clearTimeout(t);
      call.respond(res);
    };
    const t = setTimeout(answer, MEMBER_LIST_READ_WAIT_MS);
    server.linearizableRead().then(answer, answer);
  });
}
