// The real etcdctl (3.4) against a real quorumkv process: users, roles, permissions, auth
// enable/disable and denied requests, with the output and errors real etcd 3.4.23 gives for the
// same commands (recorded against it; see docs/security.md).
import assert from 'node:assert/strict';
import { etcdctl, startServer, type ServerProcess, requireEtcdctl } from '../integration/harness';

describe('etcdctl against quorumkv: auth', function () {
  this.timeout(120_000);
  let srv: ServerProcess;
  const ctl = (args: string[], input?: string) => etcdctl(srv.endpoint, args, input);
  const ok = async (args: string[], input?: string) => {
    const r = await ctl(args, input);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  /** etcdctl's last stderr line ("Error: ..."), without the client's retry warnings. */
  const fails = async (args: string[], input?: string) => {
    const r = await ctl(args, input);
    assert.notEqual(r.code, 0, `etcdctl ${args.join(' ')} should fail: ${r.stdout}`);
    return r.stderr
      .split('\n')
      .filter((l) => l && !l.startsWith('{'))
      .join('\n');
  };
  const root = ['--user', 'root:rootpw'];
  const alice = ['--user', 'alice:alicepw'];

  before(async function () {
    requireEtcdctl(this);
    srv = await startServer();
  });
  after(async () => srv && (await srv.stop()));

  it('user add (stdin and name:password forms), duplicates and empty names', async () => {
    assert.equal(await ok(['user', 'add', 'root', '--interactive=false'], 'rootpw\n'), 'User root created\n');
    assert.equal(await ok(['user', 'add', 'alice:alicepw']), 'User alice created\n');
    assert.equal(await ok(['user', 'add', 'nopw', '--no-password']), 'User nopw created\n');
    assert.equal(await fails(['user', 'add', 'alice:x']), 'Error: etcdserver: user name already exists');
    assert.equal(await fails(['user', 'add', '', '--interactive=false'], 'x\n'), 'Error: etcdserver: user name is empty');
  });

  it('auth enable without the root role: etcdctl creates role root, grants it, and retries', async () => {
    assert.equal(await ok(['auth', 'enable']), 'Authentication Enabled\n');
    assert.equal(await ok([...root, 'role', 'get', 'root']), 'Role root\nKV Read:\nKV Write:\n');
    assert.equal(await ok([...root, 'user', 'get', 'root']), 'User: root\nRoles: root\n');
  });

  it('without credentials every request needs a user: "user name is empty"', async () => {
    assert.equal(await fails(['get', 'foo']), 'Error: etcdserver: user name is empty');
    assert.equal(await fails(['put', 'foo', 'x']), 'Error: etcdserver: user name is empty');
    assert.equal(await fails(['role', 'add', 'x']), 'Error: etcdserver: user name is empty');
    assert.equal(await fails(['auth', 'enable']), 'Error: etcdserver: user name is empty');
  });

  it('roles and permissions: key, --prefix, range, --from-key; role get prints them as etcd', async () => {
    assert.equal(await ok([...root, 'role', 'add', 'reader']), 'Role reader created\n');
    assert.equal(await fails([...root, 'role', 'add', 'reader']), 'Error: etcdserver: role name already exists');
    assert.equal(await fails([...root, 'role', 'add', '']), 'Error: etcdserver: role name is empty');
    assert.equal(await ok([...root, 'role', 'grant-permission', 'reader', 'read', 'foo']), 'Role reader updated\n');
    await ok([...root, 'role', 'grant-permission', 'reader', 'readwrite', '/app/', '--prefix']);
    await ok([...root, 'role', 'grant-permission', 'reader', 'write', 'a', 'z']);
    await ok([...root, 'role', 'grant-permission', 'reader', 'read', 'k', '--from-key']);
    assert.equal(await fails([...root, 'role', 'grant-permission', 'nosuch', 'read', 'k']), 'Error: etcdserver: role name not found');
    assert.equal(
      await ok([...root, 'role', 'get', 'reader']),
      'Role reader\nKV Read:\n\t[/app/, /app0) (prefix /app/)\n\tfoo\n\t[k, <open ended>\nKV Write:\n\t[/app/, /app0) (prefix /app/)\n\t[a, z)\n',
    );
    assert.equal(await ok([...root, 'role', 'list']), 'reader\nroot\n');
    assert.equal(await fails([...root, 'role', 'get', 'nosuch']), 'Error: etcdserver: role name not found');
  });

  it('user grant-role / get / list, with etcd errors', async () => {
    assert.equal(await ok([...root, 'user', 'grant-role', 'alice', 'reader']), 'Role reader is granted to user alice\n');
    assert.equal(await ok([...root, 'user', 'grant-role', 'alice', 'reader']), 'Role reader is granted to user alice\n'); // idempotent
    assert.equal(await fails([...root, 'user', 'grant-role', 'alice', 'nosuch']), 'Error: etcdserver: role name not found');
    assert.equal(await fails([...root, 'user', 'grant-role', 'nosuch', 'reader']), 'Error: etcdserver: user name not found');
    assert.equal(await ok([...root, 'user', 'get', 'alice']), 'User: alice\nRoles: reader\n');
    assert.equal(await ok([...root, 'user', 'list']), 'alice\nnopw\nroot\n');
    assert.equal(await fails([...root, 'user', 'get', 'nosuch']), 'Error: etcdserver: user name not found');
    assert.equal(await fails([...root, 'user', 'revoke-role', 'alice', 'root']), 'Error: etcdserver: role is not granted to the user');
  });

  it('allowed and denied data requests as alice', async () => {
    assert.equal(await ok([...root, 'put', 'foo', 'bar']), 'OK\n');
    await ok([...root, 'put', '/app/x', '1']);
    assert.equal(await ok([...alice, 'get', 'foo']), 'foo\nbar\n');
    // alice may write [a, z) and /app/*, and read foo, k.. and /app/*.
    assert.equal(await fails([...alice, 'put', 'zebra', 'x']), 'Error: etcdserver: permission denied');
    assert.equal(await ok([...alice, 'get', '/app/', '--prefix']), '/app/x\n1\n');
    assert.equal(await fails([...alice, 'get', '', '--prefix']), 'Error: etcdserver: permission denied');
    assert.equal(await ok([...alice, 'get', 'k', '--from-key']), '');
    assert.equal(await ok([...alice, 'put', '/app/y', '2']), 'OK\n');
    assert.equal(await ok([...alice, 'del', '/app/y']), '1\n');
    assert.equal(await fails([...alice, 'del', 'zebra']), 'Error: etcdserver: permission denied');
    assert.equal(await fails([...alice, 'get', 'bar']), 'Error: etcdserver: permission denied'); // write-only
    // Txn: compares need READ, ops their own permission.
    assert.equal(await ok([...alice, 'txn'], 'value("foo") = "bar"\n\nput /app/z 1\n\n\n'), 'SUCCESS\n\nOK\n');
    assert.equal(await fails([...alice, 'txn'], 'value("foo") = "bar"\n\nput zebra 1\n\n\n'), 'Error: etcdserver: permission denied');
    // Admin-only: auth changes; user get of oneself and role get of one's own roles are allowed.
    assert.equal(await fails([...alice, 'user', 'list']), 'Error: etcdserver: permission denied');
    assert.equal(await fails([...alice, 'auth', 'disable']), 'Error: etcdserver: permission denied');
    assert.equal(await ok([...alice, 'user', 'get', 'alice']), 'User: alice\nRoles: reader\n');
    assert.equal(await fails([...alice, 'user', 'get', 'root']), 'Error: etcdserver: permission denied');
    assert.match(await ok([...alice, 'role', 'get', 'reader']), /^Role reader\n/);
    assert.equal(await fails([...alice, 'role', 'get', 'root']), 'Error: etcdserver: permission denied');
  });

  it('wrong passwords, unknown users and no-password users cannot authenticate', async () => {
    assert.equal(await fails(['--user', 'alice:wrong', 'get', 'foo']), 'Error: etcdserver: authentication failed, invalid user ID or password');
    assert.equal(await fails(['--user', 'nosuch:x', 'get', 'foo']), 'Error: etcdserver: authentication failed, invalid user ID or password');
    assert.equal(
      await fails(['--user', 'nopw:x', 'get', 'foo']),
      'Error: rpc error: code = Unknown desc = auth: authentication failed, password was given for no password user',
    );
  });

  it('maintenance admin RPCs answer as etcd 3.4 (raw auth errors); status, member list and compact are open', async () => {
    assert.match(await fails([...alice, 'defrag']), /rpc error: code = Unknown desc = auth: permission denied/);
    assert.match(await fails(['endpoint', 'hashkv']), /rpc error: code = Unknown desc = auth: user name is empty/);
    assert.match(await ok([...root, 'endpoint', 'hashkv']), /^127\.0\.0\.1:\d+, \d+/);
    await ok([...alice, 'endpoint', 'status']);
    await ok([...alice, 'member', 'list']);
    await ok([...alice, 'alarm', 'list']);
  });

  it('membership changes need root, as etcd 3.4 (checkMembershipOperationPermission)', async () => {
    const peer = ['--peer-urls=http://127.0.0.1:40000'];
    for (const args of [['member', 'add', 'x', ...peer, '--learner'], ['member', 'remove', '1234'], ['member', 'promote', '1234'], ['member', 'update', '1234', ...peer]]) {
      assert.equal(await fails(args), 'Error: etcdserver: user name is empty', args.join(' '));
      assert.equal(await fails([...alice, ...args]), 'Error: etcdserver: permission denied', args.join(' '));
    }
    assert.equal(await fails([...root, 'member', 'remove', '1234']), 'Error: etcdserver: member not found');
    assert.match(await ok([...root, 'member', 'add', 'x', ...peer, '--learner']), /^Member +[0-9a-f]+ added to cluster/);
    const learner = (await ok([...alice, 'member', 'list'])).split('\n').find((l) => l.endsWith(', true'));
    assert.ok(learner, 'the learner root added is listed');
    const id = learner.split(',')[0]!;
    assert.equal(await fails([...alice, 'member', 'remove', id]), 'Error: etcdserver: permission denied');
    assert.match(await ok([...root, 'member', 'remove', id]), /^Member +[0-9a-f]+ removed from cluster/);
  });

  it('lease revoke needs WRITE on every attached key', async () => {
    const lease = (await ok([...alice, 'lease', 'grant', '100'])).split(' ')[1]!;
    await ok([...root, 'put', 'zebra', 'v', `--lease=${lease}`]);
    assert.equal(await fails([...alice, 'lease', 'revoke', lease]), 'Error: failed to revoke lease (etcdserver: permission denied)');
    assert.equal(await ok([...root, 'lease', 'revoke', lease]), `lease ${lease} revoked\n`);
  });

  it('lease timetolive --keys lists the keys only to a user who may read every one (CVE-2023-32082, etcd 3.4.26)', async () => {
    const lease = (await ok([...alice, 'lease', 'grant', '100'])).split(' ')[1]!;
    await ok([...root, 'put', 'kiwi', 'v', `--lease=${lease}`]);
    assert.match(await ok([...alice, 'lease', 'timetolive', lease, '--keys']), /attached keys\(\[kiwi\]\)/);
    // alice may read kiwi (k and up) but not apple: with apple attached, the key list is refused.
    await ok([...root, 'put', 'apple', 'v', `--lease=${lease}`]);
    assert.equal(await fails([...alice, 'lease', 'timetolive', lease, '--keys']), 'Error: etcdserver: permission denied');
    assert.equal(await fails(['lease', 'timetolive', lease, '--keys']), 'Error: etcdserver: user name is empty');
    // Without keys nothing is checked (as etcd); root sees both keys.
    assert.match(await ok([...alice, 'lease', 'timetolive', lease]), /granted with TTL\(100s\)/);
    assert.match(await ok(['lease', 'timetolive', lease]), /granted with TTL\(100s\)/);
    assert.match(await ok([...root, 'lease', 'timetolive', lease, '--keys']), /attached keys\(\[(apple kiwi|kiwi apple)\]\)/);
    await ok([...root, 'lease', 'revoke', lease]);
  });

  it('a denied watch is created and canceled with the permission-denied reason', async () => {
    const r = await ctl([...alice, 'watch', 'bar']);
    assert.match(r.stdout + r.stderr, /watch was canceled \(rpc error: code = PermissionDenied desc = etcdserver: permission denied\)/);
  });

  it('revoke-permission, root protections, passwd, delete', async () => {
    assert.equal(await fails([...root, 'role', 'revoke-permission', 'reader', 'nope']), 'Error: etcdserver: permission is not granted to the role');
    assert.equal(await ok([...root, 'role', 'revoke-permission', 'reader', 'a', 'z']), 'Permission of range [a, z) is revoked from role reader\n');
    assert.equal(await ok([...root, 'role', 'revoke-permission', 'reader', '/app/', '--prefix']), 'Permission of range [/app/, /app0) is revoked from role reader\n');
    assert.equal(await fails([...root, 'user', 'revoke-role', 'root', 'root']), 'Error: etcdserver: invalid auth management');
    assert.equal(await fails([...root, 'user', 'delete', 'root']), 'Error: etcdserver: invalid auth management');
    assert.equal(await fails([...root, 'role', 'delete', 'root']), 'Error: etcdserver: invalid auth management');
    assert.equal(await fails([...alice, 'user', 'passwd', 'alice', '--interactive=false'], 'new\n'), 'Error: etcdserver: permission denied');
    assert.equal(await ok([...root, 'user', 'passwd', 'alice', '--interactive=false'], 'newpw\n'), 'Password updated\n');
    assert.equal(await fails([...alice, 'get', 'foo']), 'Error: etcdserver: authentication failed, invalid user ID or password');
    assert.equal(await ok(['--user', 'alice:newpw', 'get', 'foo']), 'foo\nbar\n');
    assert.equal(await ok([...root, 'role', 'delete', 'reader']), 'Role reader deleted\n');
    assert.equal(await ok([...root, 'user', 'get', 'alice']), 'User: alice\nRoles:\n');
    assert.equal(await ok([...root, 'user', 'delete', 'alice']), 'User alice deleted\n');
    assert.equal(await fails([...root, 'user', 'delete', 'alice']), 'Error: etcdserver: user name not found');
  });

  it('auth disable opens everything again; root can then be deleted', async () => {
    const gw = async (route: string, body: object, token?: string) => {
      const res = await fetch(`http://${srv.endpoint}/v3/${route}`, {
        method: 'POST',
        headers: token ? { Authorization: token } : {},
        body: JSON.stringify(body),
      });
      return (await res.json()) as { code?: number; message?: string };
    };
    const { token } = (await gw('auth/authenticate', { name: 'root', password: 'rootpw' })) as { token: string };
    assert.ok(token);
    assert.equal(await ok([...root, 'auth', 'disable']), 'Authentication Disabled\n');
    // AuthDisable drops every token (as etcd 3.4.23, checked with the same requests): a stale one
    // is refused where etcd reads the caller, and ignored where it does not.
    const invalid = { code: 16, message: 'etcdserver: invalid auth token' };
    for (const [route, body] of [['kv/put', { key: 'eA==', value: 'eA==' }], ['kv/range', { key: 'eA==' }], ['lease/grant', { TTL: 10 }]] as const) {
      const r = await gw(route, body, token);
      assert.deepEqual({ code: r.code, message: r.message }, invalid, route);
    }
    const hash = await gw('maintenance/hash', {}, token);
    assert.deepEqual({ code: hash.code, message: hash.message }, { code: 2, message: 'auth: invalid auth token' });
    assert.equal((await gw('cluster/member/list', {}, token)).code, undefined);
    assert.equal(await ok(['get', 'foo']), 'foo\nbar\n');
    assert.equal(await ok(['user', 'list']), 'nopw\nroot\n');
    // --user still works: the client ignores "authentication is not enabled".
    assert.equal(await ok([...root, 'get', 'foo']), 'foo\nbar\n');
    assert.equal(await ok(['user', 'delete', 'root']), 'User root deleted\n');
    assert.equal(await fails(['auth', 'enable']), 'Error: etcdserver: root user does not exist');
  });

  it('clear-text passwords never reach the data dir (WAL or backend)', async () => {
    const { execFileSync } = await import('node:child_process');
    for (const pw of ['rootpw', 'alicepw', 'newpw']) {
      let found = '';
      try {
        found = execFileSync('grep', ['-rl', '--binary-files=text', pw, srv.dataDir]).toString();
      } catch {
        found = ''; // grep exits 1 when nothing matched
      }
      assert.equal(found, '', `password ${pw} found in ${found}`);
    }
  });
});
