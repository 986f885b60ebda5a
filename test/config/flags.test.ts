import assert from 'node:assert/strict';
import { ConfigError, parseServerFlags } from '../../src/config/flags';

describe('server flags (etcd names, zod-validated)', () => {
  it('defaults: single node on 127.0.0.1:2379, data dir <name>.etcd', () => {
    const c = parseServerFlags([], {});
    assert.deepEqual(c.listenClientUrls, ['http://127.0.0.1:2379']);
    assert.equal(c.name, 'default');
    assert.equal(c.dataDir, 'default.etcd');
    assert.equal(c.maxRequestBytes, 1.5 * 1024 * 1024);
    assert.equal(c.maxTxnOps, 128);
    assert.equal(c.logLevel, 'info');
    assert.deepEqual(c.advertiseClientUrls, c.listenClientUrls);
  });

  it('accepts --flag=value, --flag value and -flag forms, and ETCD_* environment variables', () => {
    const c = parseServerFlags(['--name', 'n1', '-max-request-bytes=1000', '--listen-client-urls=http://127.0.0.1:1,http://127.0.0.2:2'], {
      ETCD_LOG_LEVEL: 'debug',
      ETCD_NAME: 'ignored-because-flag-wins',
    });
    assert.equal(c.name, 'n1');
    assert.equal(c.dataDir, 'n1.etcd');
    assert.equal(c.maxRequestBytes, 1000);
    assert.equal(c.logLevel, 'debug');
    assert.deepEqual(c.listenClientUrls, ['http://127.0.0.1:1', 'http://127.0.0.2:2']);
  });

  const bad: [string[], RegExp][] = [
    [['--no-such-flag=1'], /unknown flag --no-such-flag/],
    [['--max-request-bytes=abc'], /invalid --max-request-bytes="abc": expected a positive integer/],
    [['--max-request-bytes=0'], /invalid --max-request-bytes/],
    [['--listen-client-urls=localhost'], /invalid --listen-client-urls="localhost": expected URLs/],
    [['--log-level=loud'], /invalid --log-level="loud"/],
    [['--name'], /flag --name needs a value/],
    [['stray'], /unexpected argument "stray"/],
  ];
  for (const [argv, msg] of bad) {
    it(`rejects ${argv.join(' ')} with one clear line`, () => {
      assert.throws(() => parseServerFlags(argv, {}), (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, msg);
        assert.ok(!err.message.includes('\n'), 'one line');
        return true;
      });
    });
  }
});
