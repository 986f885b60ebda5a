// quorumctl member list | add | remove | promote, and endpoint status | health (one line per
// endpoint, as etcdctl: these look at every --endpoints entry, not just the first reachable one).
import { flagBool, parseHexId, UsageError, type ParsedArgs } from './args';
import { CommandError, Connection, type ConnectionOptions } from './client';
import { formatBytes } from '../progress';
import { headerJson, int, memberHex, toJson, type HeaderPb, type OutputFormat } from './format';

interface MemberPb {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

function memberLine(m: MemberPb): string {
  const status = m.name === '' ? 'unstarted' : 'started';
  return `${memberHex(m.ID)}, ${status}, ${m.name}, ${m.peerURLs.join(',')}, ${m.clientURLs.join(',')}, ${m.isLearner}`;
}

function memberJson(m: MemberPb): object {
  return { ID: int(m.ID), name: m.name, peerURLs: m.peerURLs, clientURLs: m.clientURLs, isLearner: m.isLearner };
}

const MEMBER_USAGE = 'usage: quorumctl member list | add NAME --peer-urls URL[,URL] [--learner] | remove ID | promote ID';

export async function memberCommand(c: Connection, a: ParsedArgs, format: OutputFormat, out: NodeJS.WritableStream): Promise<void> {
  const [sub, arg, ...rest] = a.positional;
  if (rest.length > 0) throw new UsageError(MEMBER_USAGE);
  switch (sub) {
    case 'list': {
      const r = await c.unary<{ header: HeaderPb; members: MemberPb[] }>('Cluster', 'MemberList', {});
      if (format === 'json') return void out.write(toJson({ header: headerJson(r.header), members: r.members.map(memberJson) }) + '\n');
      for (const m of r.members) out.write(memberLine(m) + '\n');
      return;
    }
    case 'add': {
      const peerUrls = (a.flags.get('peer-urls') ?? '').split(',').map((u) => u.trim()).filter((u) => u.length > 0);
      if (arg === undefined || peerUrls.length === 0) throw new UsageError('usage: quorumctl member add NAME --peer-urls URL[,URL] [--learner]');
      const r = await c.unary<{ header: HeaderPb; member: MemberPb; members: MemberPb[] }>('Cluster', 'MemberAdd', { peerURLs: peerUrls, isLearner: flagBool(a, 'learner') });
      if (format === 'json') return void out.write(toJson({ header: headerJson(r.header), member: memberJson(r.member), members: r.members.map(memberJson) }) + '\n');
      // What the new member needs to start, as etcdctl prints it.
      const cluster: string[] = [];
      for (const m of r.members) {
        const name = m.ID === r.member.ID ? arg : m.name;
        if (name === '') continue;
        for (const u of m.peerURLs) cluster.push(`${name}=${u}`);
      }
      out.write(`Member ${memberHex(r.member.ID)} added to cluster ${memberHex(r.header.cluster_id)}\n\n`);
      out.write(`ETCD_NAME="${arg}"\nETCD_INITIAL_CLUSTER="${cluster.join(',')}"\n`);
      out.write(`ETCD_INITIAL_ADVERTISE_PEER_URLS="${peerUrls.join(',')}"\nETCD_INITIAL_CLUSTER_STATE="existing"\n`);
      return;
    }
    case 'remove': {
      const id = parseHexId(arg, 'member');
      const r = await c.unary<{ header: HeaderPb }>('Cluster', 'MemberRemove', { ID: id.toString() });
      out.write(format === 'json' ? toJson({ header: headerJson(r.header) }) + '\n' : `Member ${memberHex(id)} removed from cluster ${memberHex(r.header.cluster_id)}\n`);
      return;
    }
    case 'promote': {
      const id = parseHexId(arg, 'member');
      const r = await c.unary<{ header: HeaderPb }>('Cluster', 'MemberPromote', { ID: id.toString() });
      out.write(format === 'json' ? toJson({ header: headerJson(r.header) }) + '\n' : `Member ${memberHex(id)} promoted in cluster ${memberHex(r.header.cluster_id)}\n`);
      return;
    }
    default:
      throw new UsageError(MEMBER_USAGE);
  }
}

interface StatusPb {
  header: HeaderPb;
  version: string;
  dbSize: string;
  leader: string;
  raftIndex: string;
  raftTerm: string;
  raftAppliedIndex: string;
  errors: string[];
  dbSizeInUse: string;
  isLearner: boolean;
}

const ALARM_NAMES: Record<number, string> = { 1: 'NOSPACE', 2: 'CORRUPT' };

/** Runs `fn` against each endpoint on its own connection; failures are reported per endpoint and
 *  make the command fail (exit 1) after every endpoint was tried. */
async function eachEndpoint(endpoints: readonly string[], opts: ConnectionOptions, fn: (c: Connection) => Promise<void>, onFail: (ep: string, err: Error) => void): Promise<void> {
  let failed = 0;
  for (const ep of endpoints) {
    let c: Connection | undefined;
    try {
      c = await Connection.openOne(ep, opts);
      await fn(c);
    } catch (err) {
      failed++;
      onFail(ep, err as Error);
    } finally {
      c?.close();
    }
  }
  if (failed > 0) throw new CommandError(failed === endpoints.length && endpoints.length === 1 ? 'unhealthy cluster' : `${failed} of ${endpoints.length} endpoints failed`);
}

export async function endpointCommand(endpoints: readonly string[], opts: ConnectionOptions, a: ParsedArgs, format: OutputFormat, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<void> {
  const sub = a.positional[0];
  if (a.positional.length !== 1) throw new UsageError('usage: quorumctl endpoint status | health');
  if (sub === 'status') {
    const rows: object[] = [];
    await eachEndpoint(endpoints, opts, async (c) => {
      const s = await c.unary<StatusPb>('Maintenance', 'Status', {});
      if (format === 'json') {
        rows.push({ Endpoint: c.endpoint, Status: { header: headerJson(s.header), version: s.version, dbSize: int(s.dbSize), leader: int(s.leader), raftIndex: int(s.raftIndex), raftTerm: int(s.raftTerm), raftAppliedIndex: int(s.raftAppliedIndex), errors: s.errors, dbSizeInUse: int(s.dbSizeInUse), isLearner: s.isLearner } });
        return;
      }
      // etcdctl's columns: endpoint, ID, version, db size, is leader, is learner, raft term,
      // raft index, raft applied index, errors.
      const id = BigInt(s.header.member_id);
      out.write([c.endpoint, memberHex(id), s.version, formatBytes(Number(s.dbSize)), String(BigInt(s.leader) === id), String(s.isLearner), s.raftTerm, s.raftIndex, s.raftAppliedIndex, s.errors.join(', ')].join(', ') + '\n');
    }, (ep, e) => err.write(`Failed to get the status of endpoint ${ep} (${e.message})\n`));
    if (format === 'json') out.write(toJson(rows) + '\n');
    return;
  }
  if (sub === 'health') {
    const rows: object[] = [];
    await eachEndpoint(endpoints, opts, async (c) => {
      const t0 = performance.now();
      // etcdctl's check: a linearizable Get must go through (a missing key is fine) ...
      await c.unary('KV', 'Range', { key: Buffer.from('health') });
      const took = `${(performance.now() - t0).toFixed(3)}ms`;
      // ... and, as etcdctl ≥ 3.5 (3.4 skips this), no alarm may be active.
      const alarms = await c.unary<{ alarms: { alarm: number }[] }>('Maintenance', 'Alarm', { action: 0, memberID: '0', alarm: 0 });
      if (alarms.alarms.length > 0) {
        const names = alarms.alarms.map((x) => ALARM_NAMES[x.alarm] ?? String(x.alarm)).join(' ');
        throw new CommandError(`Active Alarm(s): ${names}`);
      }
      rows.push({ endpoint: c.endpoint, health: true, took });
      if (format !== 'json') out.write(`${c.endpoint} is healthy: successfully committed proposal: took = ${took}\n`);
    }, (ep, e) => {
      rows.push({ endpoint: ep, health: false, error: e.message });
      if (format !== 'json') err.write(`${ep} is unhealthy: failed to commit proposal: ${e.message}\n`);
    }).finally(() => {
      // etcdctl's epHealth rows: "health" is always there (plain JSON, not the proto rules).
      if (format === 'json') out.write(JSON.stringify(rows) + '\n');
    });
    return;
  }
  throw new UsageError('usage: quorumctl endpoint status | health');
}
