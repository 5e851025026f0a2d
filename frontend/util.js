// Small async helpers: cancellable waits, backoff, a counting semaphore and a lock.

/** The error an aborted operation rejects with. */
export function abortError() {
  return new DOMException('The operation was cancelled.', 'AbortError');
}

export function isAbort(err) {
  return err instanceof DOMException && err.name === 'AbortError';
}

/** Waits `ms` milliseconds, or rejects as soon as `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortError()); return; }
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', stop);
      resolve();
    }
    function stop() {
      clearTimeout(timer);
      reject(abortError());
    }
    signal?.addEventListener('abort', stop, { once: true });
  });
}

/** Resolves once the browser thinks it is online (at once if it already is). */
export function whenOnline(signal) {
  if (navigator.onLine !== false) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const ready = () => { cleanup(); resolve(); };
    const stop = () => { cleanup(); reject(abortError()); };
    function cleanup() {
      window.removeEventListener('online', ready);
      signal?.removeEventListener('abort', stop);
    }
    window.addEventListener('online', ready);
    signal?.addEventListener('abort', stop, { once: true });
  });
}

/**
 * Delay before retry number `attempt` (1, 2, ...): exponential from about a second, with
 * jitter so that parallel parts do not retry in lockstep, capped at 30 s.
 */
export function backoffDelay(attempt) {
  const ceiling = Math.min(30_000, 1000 * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** At most `limit` tasks at once; the others wait in arrival order. */
export class Limiter {
  constructor(limit) {
    this.limit = limit;
    this.active = 0;
    this.waiting = [];
  }

  async run(task, signal) {
    await this.acquire(signal);
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  acquire(signal) {
    if (signal?.aborted) return Promise.reject(abortError());
    if (this.active < this.limit) {
      this.active += 1;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => { signal?.removeEventListener('abort', entry.cancel); resolve(); },
        cancel: () => {
          const index = this.waiting.indexOf(entry);
          if (index >= 0) this.waiting.splice(index, 1);
          reject(abortError());
        },
      };
      signal?.addEventListener('abort', entry.cancel, { once: true });
      this.waiting.push(entry);
    });
  }

  release() {
    const next = this.waiting.shift();
    if (next) next.grant();
    else this.active -= 1;
  }
}

/** One task at a time (used to keep at most one file part in memory for hashing). */
export class Lock extends Limiter {
  constructor() {
    super(1);
  }
}
