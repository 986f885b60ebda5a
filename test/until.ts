// Waiting in tests: polls a condition every few ms until it holds, or fails after a bound.

/** Resolves once `cond()` is true (checked every 5 ms); rejects after `timeoutMs`. */
export function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      if (cond()) (clearInterval(t), resolve());
      else if (Date.now() > deadline) (clearInterval(t), reject(new Error('timed out waiting')));
    }, 5);
  });
}
