// The receive window of an incoming raft message stream.
//
// Why: grpc-js's server keeps HTTP/2's default flow-control windows, 64 KiB per stream and per
// connection, and has no option to change them. With 4 KiB values a leader's MsgApp batch under
// 100 clients is 100-200 KiB: each batch then waits for several WINDOW_UPDATE round trips, each one
// a turn of the follower's event loop, while the batches behind it queue on the leader. Measured
// (h-write, 2026-12-07, 3 members, 100 clients, 4 KiB values, a loaded 2-core machine): leader
// send -> follower receive p50 58-104 ms with the default window, 35-41 ms with this one.
// etcd's peer streams are HTTP/1.1 over TCP, bounded by the kernel's socket buffers only.
//
// Memory: a peer may have up to STREAM_WINDOW_BYTES of one stream (CONNECTION_WINDOW_BYTES over
// all streams of its connection) received and not yet read by us, and only once a raft stream was
// accepted on it. An incoming snapshot, on its own connection, opens that connection to the
// snapshot receive window instead (snapshot.ts openReceiveWindow, 4 MiB by default).
import type * as http2 from 'node:http2';
import type { Logger } from '../util/log';

/** Per-stream window (SETTINGS_INITIAL_WINDOW_SIZE): two full batches of MAX_BATCH_BYTES_DEFAULT. */
export const STREAM_WINDOW_BYTES = 2 * 1024 * 1024;
/** Connection-level window of a connection that carries a raft message stream. */
export const CONNECTION_WINDOW_BYTES = 4 * 1024 * 1024;
/** How deep to look through grpc-js's call wrappers for the HTTP/2 stream. */
const CALL_WRAPPERS_MAX = 4;

let warned = false;
/** Sessions already waiting for a SETTINGS ACK to widen their stream window (one listener each). */
const waitingForAck = new WeakSet<http2.Http2Session>();

/**
 * Widens the receive windows of the HTTP/2 connection under `call` (a grpc-js server call) to at
 * least `streamBytes` per stream (SETTINGS_INITIAL_WINDOW_SIZE, which HTTP/2 applies to streams
 * already open, RFC 9113 6.9.2) and `connectionBytes` for the connection; never narrows them. The
 * one place that reaches into grpc-js (raft message streams and snapshots both come here): grpc-js
 * has no server option for the window and does not expose the stream, which is found through the
 * call's wrappers (each holds the next as `call`/`nextCall`, the innermost the `stream`). If a
 * grpc-js version hides it, the windows stay at the default (slower with large messages, never
 * wrong), that is logged once, and test/transport/window.test.ts fails. Returns the session, for
 * tests.
 */
export function widenReceiveWindow(call: object, log: Logger, streamBytes = STREAM_WINDOW_BYTES, connectionBytes = CONNECTION_WINDOW_BYTES): http2.Http2Session | undefined {
  const session = sessionOf(call);
  if (session === undefined) {
    if (!warned) {
      warned = true;
      log.warn('cannot reach the HTTP/2 session of a peer call (grpc-js internals changed?): its receive window stays at 64 KiB');
    }
    return undefined;
  }
  if (session.destroyed) return session;
  try {
    if ((session.state.localWindowSize ?? 0) < connectionBytes) session.setLocalWindowSize(connectionBytes);
    widenStreamWindow(session, streamBytes, log);
  } catch (err) {
    log.warn('widening an HTTP/2 receive window failed; it stays at 64 KiB', { error: String(err) });
  }
  return session;
}

/**
 * Sends SETTINGS_INITIAL_WINDOW_SIZE = `streamBytes` unless it is in force already. localSettings
 * changes only when the peer acknowledges; while a SETTINGS frame waits for its ACK (always so on a
 * fresh connection, whose first stream can arrive before the client has seen our initial SETTINGS)
 * this waits for that ACK and looks again, rather than skip the widening or send one SETTINGS frame
 * per call.
 */
function widenStreamWindow(session: http2.Http2Session, streamBytes: number, log: Logger): void {
  if (session.destroyed || (session.localSettings.initialWindowSize ?? 0) >= streamBytes) return;
  if (!session.pendingSettingsAck) {
    session.settings({ initialWindowSize: streamBytes });
    return;
  }
  // A second caller while one waits gets the first's width: snapshots, the one caller that asks
  // for another, have a connection of their own.
  if (waitingForAck.has(session)) return;
  waitingForAck.add(session);
  session.once('localSettings', () => {
    waitingForAck.delete(session);
    try {
      widenStreamWindow(session, streamBytes, log);
    } catch (err) {
      log.warn('widening an HTTP/2 stream window failed; it stays at 64 KiB', { error: String(err) });
    }
  });
}

function sessionOf(call: object): http2.Http2Session | undefined {
  let c: unknown = (call as { call?: unknown }).call;
  for (let depth = 0; depth < CALL_WRAPPERS_MAX && typeof c === 'object' && c !== null; depth++) {
    const stream = (c as { stream?: { session?: unknown } }).stream;
    const session = stream?.session;
    if (typeof session === 'object' && session !== null && typeof (session as http2.Http2Session).setLocalWindowSize === 'function') return session as http2.Http2Session;
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}
