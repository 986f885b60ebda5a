// Peer TLS on the raft stream: the sender dials with the member's peer files (TransportOptions.tls:
// our certificate as the client certificate, the CA verifying the receiver's), the receiver's peer
// port (a TLS listener requiring a client certificate from its CA) takes the stream; a sender whose
// certificate is from another CA fails the handshake and reports the peer unreachable.
import assert from 'node:assert/strict';
import { ClientListener } from '../../src/grpcserver/listener';
import { H2GrpcServer } from '../../src/grpcserver/server';
import { loadTls, tlsServerOptions, type TlsMaterial } from '../../src/tls';
import { PEER_MESSAGE_BYTES_MAX } from '../../src/transport';
import { hasOpenssl, makeTestCerts, removeTestCerts, type TestCerts } from '../integration/tls_certs';
import { app, startMember, stopMember, waitFor, type Member } from './helpers';

describe('transport: the raft stream over peer TLS', function () {
  this.timeout(30_000);
  let certs: TestCerts | undefined;
  const members: Member[] = [];
  const listeners: ClientListener[] = [];
  before(function () {
    if (!hasOpenssl()) this.skip();
    certs = makeTestCerts();
  });
  after(async () => {
    await Promise.all(members.map(stopMember));
    await Promise.all(listeners.map((l) => l.close(0)));
    removeTestCerts(certs);
  });

  const material = (who: { cert: string; key: string }): TlsMaterial => loadTls({ certFile: who.cert, keyFile: who.key, trustedCaFile: certs!.ca, clientCertAuth: true }, 'peer-');

  /** A member whose peer port is https, with the server certificate, requiring client certificates. */
  const tlsMember = async (id: bigint, client: TlsMaterial): Promise<{ m: Member; url: string }> => {
    const m = await startMember(id, { tls: client });
    members.push(m);
    const grpc = new H2GrpcServer({ maxReceiveBytes: PEER_MESSAGE_BYTES_MAX });
    m.transport.register(grpc);
    const listener = new ClientListener({ grpc, tls: tlsServerOptions(material(certs!.server)) });
    listeners.push(listener);
    const [port] = await listener.listen(['https://127.0.0.1:0']);
    return { m, url: `https://127.0.0.1:${port}` };
  };

  it('delivers messages between members dialing with their peer certificates', async () => {
    const a = await tlsMember(0x71n, material(certs!.server));
    const b = await tlsMember(0x72n, material(certs!.server));
    a.m.transport.addPeer(0x72n, [b.url]);
    a.m.transport.send([app(0x71n, 0x72n, 1), app(0x71n, 0x72n, 2)]);
    await waitFor(() => b.m.received.length === 2, 'two messages over TLS');
    assert.deepEqual(b.m.received.map((x) => x.index), [1, 2]);
    assert.deepEqual(a.m.unreachable, []);
  });

  it('a sender with a certificate from another CA is refused in the handshake and reports the peer unreachable', async () => {
    const b = await tlsMember(0x74n, material(certs!.server));
    const evil = await tlsMember(0x73n, { ...material(certs!.server), cert: material(certs!.mallory).cert, key: material(certs!.mallory).key });
    evil.m.transport.addPeer(0x74n, [b.url]);
    evil.m.transport.send([app(0x73n, 0x74n, 1)]);
    await waitFor(() => evil.m.unreachable.includes(0x74n), 'unreachable');
    assert.equal(b.m.received.length, 0);
  });
});
