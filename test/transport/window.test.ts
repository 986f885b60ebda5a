// The receive window of a raft message stream: a receiver opens its connection's window beyond
// HTTP/2's 64 KiB default once it has accepted a raft stream on it (RAFT_STREAM_RECV_WINDOW: a
// MsgApp batch of 4 KiB entries is 100-200 KiB), and not for a stream it refused. (The stream's own
// window, and a snapshot's: test/grpcserver/client_stream.test.ts and snapshot.test.ts.)
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { RAFT_STREAM_RECV_WINDOW } from '../../src/transport';
import { STREAM_PATH } from '../../src/transport/wire';
import { CLUSTER_ID, startMember, stopMember, waitFor, type Member } from './helpers';

const DEFAULT_WINDOW_BYTES = 65_535;

describe('transport: receive window of a raft stream', function () {
  this.timeout(15_000);
  let b: Member | undefined;
  const sessions: http2.ClientHttp2Session[] = [];
  after(async () => {
    for (const s of sessions) s.destroy();
    if (b) await stopMember(b);
  });

  /** A raw HTTP/2 client session to b's peer port (what the sending member's grpc-js does). */
  const connect = (port: number): http2.ClientHttp2Session => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    sessions.push(s);
    s.on('error', () => undefined); // destroyed in after(); a reset there is expected
    return s;
  };
  const openStream = (s: http2.ClientHttp2Session, to: string): http2.ClientHttp2Stream => {
    const st = s.request({
      ':method': 'POST',
      ':path': STREAM_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      'x-server-from': '29',
      'x-raft-to': to,
      'x-etcd-cluster-id': CLUSTER_ID.toString(16),
    });
    st.on('error', () => undefined);
    return st;
  };

  it('opens the connection to RAFT_STREAM_RECV_WINDOW once the receiver accepts a raft stream, even one sent with the preface', async () => {
    b = await startMember(0x2an);
    // A fresh connection's first HEADERS come with the client's preface, before it has seen the
    // receiver's SETTINGS: the window is a WINDOW_UPDATE, which needs no ACK.
    const s = connect(b.port);
    const st = openStream(s, '2a');
    await new Promise<void>((resolve) => st.once('response', () => resolve()));
    await waitFor(() => s.state.remoteWindowSize === RAFT_STREAM_RECV_WINDOW.connectionBytes, 'the receiver\'s connection WINDOW_UPDATE');
  });

  it('stays at the default on a connection that only carried a refused stream', async () => {
    const s = connect(b!.port);
    await new Promise<void>((resolve) => s.once('remoteSettings', () => resolve()));
    // Wrong x-raft-to: refused before acceptance.
    const st = openStream(s, '99');
    st.end();
    // A refusal is a trailers-only response (grpc-status in the headers) or headers then trailers.
    const status = await new Promise<unknown>((resolve) => {
      st.once('response', (h) => (h['grpc-status'] !== undefined ? resolve(h['grpc-status']) : undefined));
      st.once('trailers', (t) => resolve(t['grpc-status']));
    });
    assert.equal(status, '9', 'the stream was refused with FAILED_PRECONDITION');
    await new Promise((r) => setTimeout(r, 100)); // a WINDOW_UPDATE would have arrived by now
    assert.equal(s.state.remoteWindowSize, DEFAULT_WINDOW_BYTES);
  });
});
