// The bcrypt worker thread (password.ts starts it): bcryptjs computes a cost-10 hash in ~100 ms
// of CPU and yields only every 100 ms, so on the member's event loop it would stall heartbeats;
// here it runs beside the loop. Messages: {id, op: 'hash', password, cost} → {id, hash};
// {id, op: 'verify', password, hash} → {id, ok}; a failure → {id, error}.
import { parentPort } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

type Request = { id: number; op: 'hash'; password: string; cost: number } | { id: number; op: 'verify'; password: string; hash: string };

const port = parentPort;
if (!port) throw new Error('bcrypt_worker.ts runs as a worker thread (password.ts starts it)');
port.on('message', (r: Request) => {
  try {
    if (r.op === 'hash') port.postMessage({ id: r.id, hash: bcrypt.hashSync(r.password, r.cost) });
    else port.postMessage({ id: r.id, ok: bcrypt.compareSync(r.password, r.hash) });
  } catch (err) {
    port.postMessage({ id: r.id, error: err instanceof Error ? err.message : String(err) });
  }
});
