// The receive window of a raft message stream: a receiver opens it beyond HTTP/2's 64 KiB default once
// it has accepted the stream (large values: a MsgApp batch of 4 KiB entries is 100-200 KiB), and only
// on that connection (an incoming snapshot, on its own connection, opens its own window: snapshot.test.ts).
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES } from '../../src/transport/window';
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
  const connect = async (port: number): Promise<http2.ClientHttp2Session> => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    sessions.push(s);
    s.on('error', () => undefined); // destroyed in after(); a reset there is expected
    await new Promise<void>((resolve) => s.once('remoteSettings', () => resolve()));
    return s;
  };
  const openStream = (s: http2.ClientHttp2Session, path: string, fromHex: string): http2.ClientHttp2Stream => {
    const st = s.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'x-server-from': fromHex,
      'x-raft-to': '2a',
      'x-etcd-cluster-id': CLUSTER_ID.toString(16),
    });
    st.on('error', () => undefined);
    return st;
  };

  it('is widened to STREAM/CONNECTION_WINDOW_BYTES once the receiver accepts a raft stream', async () => {
    b = await startMember(0x2an);
    const s = await connect(b.port);
    assert.equal(s.remoteSettings.initialWindowSize, DEFAULT_WINDOW_BYTES, 'default before any stream');
    const st = openStream(s, STREAM_PATH, '29');
    await new Promise<void>((resolve) => st.once('response', () => resolve()));
    await waitFor(() => s.remoteSettings.initialWindowSize === STREAM_WINDOW_BYTES, 'the receiver\'s new SETTINGS');
    await waitFor(() => (s.state.remoteWindowSize ?? 0) >= CONNECTION_WINDOW_BYTES - DEFAULT_WINDOW_BYTES, 'the receiver\'s connection WINDOW_UPDATE');
    assert.ok(b.logLines.every((l) => !l.includes('cannot reach the HTTP/2 session')), 'the session was found');
  });

  it('is widened when the stream arrives before the sender has acknowledged our first SETTINGS', async () => {
    // A fresh connection's first HEADERS come with the client's preface, before it has seen (and
    // acknowledged) the receiver's initial SETTINGS: the widening must wait for that ACK, not skip.
    const s = http2.connect(`http://127.0.0.1:${b!.port}`);
    sessions.push(s);
    s.on('error', () => undefined);
    const st = openStream(s, STREAM_PATH, '29');
    await new Promise<void>((resolve) => st.once('response', () => resolve()));
    await waitFor(() => s.remoteSettings.initialWindowSize === STREAM_WINDOW_BYTES, 'the receiver\'s new SETTINGS');
    assert.ok(b!.logLines.every((l) => !l.includes('window failed')));
  });

  it('stays at the default on a connection that only carried a rejected stream', async () => {
    const s = await connect(b!.port);
    // Wrong x-raft-to: refused before acceptance.
    const st = s.request({ ':method': 'POST', ':path': STREAM_PATH, 'content-type': 'application/grpc', te: 'trailers', 'x-server-from': '29', 'x-raft-to': '99', 'x-etcd-cluster-id': CLUSTER_ID.toString(16) });
    st.on('error', () => undefined);
    st.end();
    // A refusal is a trailers-only response (grpc-status in the headers) or headers then trailers.
    const status = await new Promise<unknown>((resolve) => {
      st.once('response', (h) => (h['grpc-status'] !== undefined ? resolve(h['grpc-status']) : undefined));
      st.once('trailers', (t) => resolve(t['grpc-status']));
    });
    assert.notEqual(status, '0', 'the stream was refused');
    await new Promise((r) => setTimeout(r, 100)); // a SETTINGS frame would have arrived by now
    assert.equal(s.remoteSettings.initialWindowSize, DEFAULT_WINDOW_BYTES);
  });
});
