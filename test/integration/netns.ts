// Real network partitions for cluster tests: each member runs in its own network namespace, and the
// links between members are real (veth) links that a test cuts, cuts in one direction, or flaps.
// Needs root, `ip` and `tc` (iproute2); no iptables/nft (not installed here): one-way drops are a
// `blackhole` qdisc on one end of a link, which drops every packet that end sends.
//
// Layout for a run with second octet R (claimed atomically, see claimSubnet) and members 1..n:
//
//   member i: namespace qkv-<pid>-<seq>-n<i>, address 10.R.0.i/32 on its lo; client port 2379 and
//             peer port 2380 on that address (namespaces do not share ports).
//   peer link i-j (i < j): a veth pair `to<j>` in namespace i <-> `to<i>` in namespace j, with a
//             /32 route to the other member's address and a permanent neighbour entry (so a link
//             that drops one direction does not also lose ARP, which would cut the other).
//   client link i: a veth pair qk<tag>c<i> (root namespace, 10.R.(10+i).1/24) <-> `cl` (namespace
//             i, 10.R.(10+i).2/24), and a root route 10.R.0.i/32 via it: the test process (in the
//             root namespace) reaches every member's client port, and no peer link touches it.
//   root namespace: `unreachable 10.R.0.0/16`, so that nothing for these addresses ever leaves by
//             the default route, also while a run is being torn down.
//
// Cutting: linkDown(i, j) sets namespace i's end of the link down (its route and neighbour go with
// it; the other end sees no carrier); linkUp(i, j) restores it. dropOneWay(from, to) drops
// everything `from` sends on the link (to -> from still flows). Every namespace, link and route is
// deleted by destroy() (after hooks), at process exit, and, if a run was killed, by the next run
// (namespaces whose creating process is gone are swept, their processes killed first).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const NS_PREFIX = 'qkv-';
const CMD_TIMEOUT_MS = 5_000;
/** Attempts at finding a free 10.R.0.0/16. */
const SUBNET_ATTEMPTS_MAX = 40;
export const CLIENT_PORT = 2379;
export const PEER_PORT = 2380;

let runSeq = 0;
const live = new Set<NetnsNetwork>();
process.on('exit', () => {
  for (const n of live) n.destroy();
});

/** Runs a command (bounded); rejects with its stderr. */
async function run(cmd: string, args: string[]): Promise<void> {
  try {
    await execFileAsync(cmd, args, { timeout: CMD_TIMEOUT_MS, killSignal: 'SIGKILL' });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

function runSync(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { timeout: CMD_TIMEOUT_MS, killSignal: 'SIGKILL', stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Like runSync, for teardown: what is already gone is fine; anything else is reported, not thrown. */
function tryRunSync(cmd: string, args: string[], problems: string[]): void {
  try {
    runSync(cmd, args);
  } catch (err) {
    const text = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message);
    if (!/Cannot find device|No such file|does not exist|No such process|Cannot open network namespace/i.test(text)) problems.push(`${cmd} ${args.join(' ')}: ${text.trim()}`);
  }
}

/** Why these tests cannot run here, or undefined if they can (root, ip, tc, namespaces work). */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: network namespaces need CAP_NET_ADMIN';
  for (const tool of ['ip', 'tc']) {
    try {
      runSync(tool, ['-V']);
    } catch {
      return `\`${tool}\` (iproute2) is not installed`;
    }
  }
  const probe = `${NS_PREFIX}${process.pid}-probe`;
  try {
    runSync('ip', ['netns', 'add', probe]);
  } catch (err) {
    return `\`ip netns add\` fails: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
  const problems: string[] = [];
  tryRunSync('ip', ['netns', 'del', probe], problems);
  return problems.length > 0 ? problems.join('; ') : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Deletes namespaces left by runs whose process is gone (killed before its after hooks ran). */
function sweepStale(): void {
  let list = '';
  try {
    list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: CMD_TIMEOUT_MS });
  } catch (err) {
    console.warn(`netns: cannot list namespaces to sweep stale ones: ${String(err)}`);
    return;
  }
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${NS_PREFIX}(\\d+)-`).exec(name);
    if (!m || alive(Number(m[1]))) continue;
    const problems: string[] = [];
    try {
      const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', timeout: CMD_TIMEOUT_MS }).split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch (err) {
          problems.push(`kill ${pid}: ${String(err)}`);
        }
      }
    } catch (err) {
      problems.push(`ip netns pids ${name}: ${String(err)}`);
    }
    tryRunSync('ip', ['netns', 'del', name], problems);
    if (problems.length > 0) console.warn(`netns: sweeping stale ${name}: ${problems.join('; ')}`);
  }
}

function mac(r: number, i: number, j: number): string {
  const h = (n: number) => n.toString(16).padStart(2, '0');
  return `02:71:${h(r)}:${h(i)}:${h(j)}:01`;
}

export class NetnsNetwork {
  private destroyed = false;
  /** Links whose namespace-i end is down, as "i-j". */
  private readonly down = new Set<string>();
  /** One-way drops in place, as "from-to". */
  private readonly drops = new Set<string>();

  private constructor(
    readonly size: number,
    /** The second octet of this run's 10.R.0.0/16. */
    readonly r: number,
    private readonly tag: string,
    private readonly pidTag: string,
  ) {}

  /** Creates namespaces, links and routes for `size` members. */
  static async create(size: number): Promise<NetnsNetwork> {
    if (size < 1 || size > 9) throw new Error(`netns: ${size} members (1..9 supported)`);
    sweepStale();
    const seq = runSeq++;
    const tag = ((process.pid * 10 + seq) % 36 ** 5).toString(36).padStart(5, '0');
    const r = await claimSubnet();
    const net = new NetnsNetwork(size, r, tag, `${process.pid}-${seq}`);
    live.add(net);
    try {
      await net.build();
    } catch (err) {
      net.destroy();
      throw err;
    }
    return net;
  }

  ns(i: number): string {
    return `${NS_PREFIX}${this.pidTag}-n${i}`;
  }

  /** Member i's address (client and peer ports on it). */
  host(i: number): string {
    return `10.${this.r}.0.${i}`;
  }

  /** The command prefix that runs a process in member i's namespace. */
  wrap(i: number): string[] {
    return ['ip', 'netns', 'exec', this.ns(i)];
  }

  private rootVeth(i: number): string {
    return `qk${this.tag}c${i}`;
  }

  private async build(): Promise<void> {
    const r = this.r;
    for (let i = 1; i <= this.size; i++) {
      const ns = this.ns(i);
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `${this.host(i)}/32`, 'dev', 'lo']);
      // Client link to the root namespace.
      const root = this.rootVeth(i);
      await run('ip', ['link', 'add', root, 'type', 'veth', 'peer', 'name', 'cl', 'netns', ns]);
      await run('ip', ['addr', 'add', `10.${r}.${10 + i}.1/24`, 'dev', root]);
      await run('ip', ['link', 'set', root, 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `10.${r}.${10 + i}.2/24`, 'dev', 'cl']);
      await run('ip', ['-n', ns, 'link', 'set', 'cl', 'up']);
      await run('ip', ['route', 'add', `${this.host(i)}/32`, 'via', `10.${r}.${10 + i}.2`, 'dev', root]);
    }
    for (let i = 1; i <= this.size; i++) {
      for (let j = i + 1; j <= this.size; j++) {
        await run('ip', ['link', 'add', `to${j}`, 'netns', this.ns(i), 'address', mac(r, i, j), 'type', 'veth', 'peer', 'name', `to${i}`, 'netns', this.ns(j), 'address', mac(r, j, i)]);
        await this.endUp(i, j);
        await this.endUp(j, i);
      }
    }
  }

  /** Brings namespace i's end of link i-j up with its route and neighbour entry. */
  private async endUp(i: number, j: number): Promise<void> {
    const ns = this.ns(i);
    await run('ip', ['-n', ns, 'link', 'set', `to${j}`, 'up']);
    await run('ip', ['-n', ns, 'route', 'replace', `${this.host(j)}/32`, 'dev', `to${j}`, 'src', this.host(i)]);
    await run('ip', ['-n', ns, 'neigh', 'replace', this.host(j), 'lladdr', mac(this.r, j, i), 'dev', `to${j}`, 'nud', 'permanent']);
  }

  private check(i: number, j: number): void {
    if (this.destroyed) throw new Error('netns: network already destroyed');
    if (i === j || i < 1 || j < 1 || i > this.size || j > this.size) throw new Error(`netns: no link ${i}-${j}`);
  }

  /** Sets member i's end of the link to j down: nothing passes either way. */
  async linkDown(i: number, j: number): Promise<void> {
    this.check(i, j);
    await run('ip', ['-n', this.ns(i), 'link', 'set', `to${j}`, 'down']);
    this.down.add(`${i}-${j}`);
  }

  async linkUp(i: number, j: number): Promise<void> {
    this.check(i, j);
    await this.endUp(i, j);
    this.down.delete(`${i}-${j}`);
  }

  /** Drops everything member `from` sends to member `to` (on their link); to -> from still flows. */
  async dropOneWay(from: number, to: number): Promise<void> {
    this.check(from, to);
    await run('tc', ['-n', this.ns(from), 'qdisc', 'replace', 'dev', `to${to}`, 'root', 'blackhole']);
    this.drops.add(`${from}-${to}`);
  }

  async undropOneWay(from: number, to: number): Promise<void> {
    this.check(from, to);
    await run('tc', ['-n', this.ns(from), 'qdisc', 'del', 'dev', `to${to}`, 'root']);
    this.drops.delete(`${from}-${to}`);
  }

  /** Cuts every peer link of member i (its client link stays: the test still reaches it). */
  async isolate(i: number): Promise<void> {
    for (let j = 1; j <= this.size; j++) if (j !== i) await this.linkDown(i, j);
  }

  /** Restores every link cut or one-way drop in place. */
  async healAll(): Promise<void> {
    for (const k of [...this.down]) {
      const [i, j] = k.split('-').map(Number) as [number, number];
      await this.linkUp(i, j);
    }
    for (const k of [...this.drops]) {
      const [from, to] = k.split('-').map(Number) as [number, number];
      await this.undropOneWay(from, to);
    }
  }

  /** A short description of what is cut, for logs. */
  describe(): string {
    return `down: [${[...this.down].join(' ')}], one-way drops: [${[...this.drops].join(' ')}]`;
  }

  /**
   * Deletes every namespace (their veths go with them, root ends included) and the root routes.
   * Synchronous, so that it also runs at process exit; kill the processes in the namespaces
   * first (a namespace lives on, unnamed, while a process is in it).
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    const problems: string[] = [];
    for (let i = 1; i <= this.size; i++) {
      tryRunSync('ip', ['netns', 'del', this.ns(i)], problems);
      tryRunSync('ip', ['link', 'del', this.rootVeth(i)], problems);
    }
    tryRunSync('ip', ['route', 'del', 'unreachable', `10.${this.r}.0.0/16`], problems);
    if (problems.length > 0) console.warn(`netns: teardown problems: ${problems.join('; ')}`);
  }
}

/** Claims a 10.R.0.0/16 no one here uses: adding its `unreachable` route fails if the route exists,
 *  so two runs at once cannot take the same R; R also must not overlap any address or route. */
async function claimSubnet(): Promise<number> {
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8', timeout: CMD_TIMEOUT_MS });
  const addrs = execFileSync('ip', ['-4', 'addr'], { encoding: 'utf8', timeout: CMD_TIMEOUT_MS });
  const errors: string[] = [];
  for (let attempt = 0; attempt < SUBNET_ATTEMPTS_MAX; attempt++) {
    const r = 64 + Math.floor(Math.random() * 190);
    if (routes.includes(`10.${r}.`) || addrs.includes(`10.${r}.`)) continue;
    try {
      await run('ip', ['route', 'add', 'unreachable', `10.${r}.0.0/16`]);
      return r;
    } catch (err) {
      errors.push(String(err));
    }
  }
  throw new Error(`netns: no free 10.R.0.0/16 after ${SUBNET_ATTEMPTS_MAX} attempts (${errors.slice(-3).join('; ')})`);
}
