// Small, dependency-free helpers shared by the compat suite.
import { createHmac } from 'node:crypto';

/** Reject with a descriptive error if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for: ${what}`));
    }, ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Drains an async-iterable stream of socketcluster-client (a socket listener,
 * a channel, a channel listener) into an array, starting synchronously so
 * nothing emitted after this call is missed.
 *
 * `next()` / `waitFor()` walk a cursor over the recorded items, so a test can
 * wait for "the next thing that happens" without re-reading old items.
 */
export class Collector {
  constructor(stream, label) {
    this.label = label;
    this.items = [];
    this.cursor = 0;
    this._wakers = new Set();
    this._consumer = stream.createConsumer();
    (async () => {
      try {
        for await (const item of this._consumer) {
          this.items.push(item);
          for (const wake of [...this._wakers]) wake();
        }
      } catch {
        // A killed consumer ends the loop; nothing else to do.
      }
    })();
  }

  get count() {
    return this.items.length;
  }

  /** Items recorded after the cursor (not consumed). */
  pending() {
    return this.items.slice(this.cursor);
  }

  /** Move the cursor to the end: later waits only see new items. */
  skipAll() {
    this.cursor = this.items.length;
  }

  /**
   * Resolve with the first item at or after the cursor that satisfies `pred`,
   * and advance the cursor past it.
   */
  waitFor(pred, ms, what) {
    const scan = () => {
      for (let i = this.cursor; i < this.items.length; i++) {
        if (pred(this.items[i])) {
          this.cursor = i + 1;
          return { found: true, item: this.items[i] };
        }
      }
      return { found: false };
    };
    const first = scan();
    if (first.found) return Promise.resolve(first.item);
    let waker;
    const p = new Promise((resolve) => {
      waker = () => {
        const r = scan();
        if (r.found) resolve(r.item);
      };
      this._wakers.add(waker);
    });
    return withTimeout(p, ms, `${what || 'item'} on ${this.label}`).finally(() => {
      this._wakers.delete(waker);
    });
  }

  next(ms, what) {
    return this.waitFor(() => true, ms, what);
  }

  /** Wait until at least `n` items have been recorded in total. */
  waitForCount(n, ms, what) {
    if (this.items.length >= n) return Promise.resolve(this.items.slice(0, n));
    let waker;
    const p = new Promise((resolve) => {
      waker = () => {
        if (this.items.length >= n) resolve(this.items.slice(0, n));
      };
      this._wakers.add(waker);
    });
    return withTimeout(p, ms, `${what || `${n} items`} on ${this.label}`).finally(() => {
      this._wakers.delete(waker);
    });
  }

  stop() {
    try {
      this._consumer.return();
    } catch {
      // already finished
    }
  }
}

// ---------------------------------------------------------------- JWT forging

export const AUTH_KEY = 'compat-test-key';

function b64url(value) {
  return Buffer.from(value).toString('base64url');
}

/**
 * Build a JWT by hand. `alg` may be 'HS256' (signed with `key`) or 'none'
 * (empty signature segment).
 */
export function forgeJwt(payload, { key = AUTH_KEY, alg = 'HS256', header } = {}) {
  const h = b64url(JSON.stringify(header || { alg, typ: 'JWT' }));
  const p = b64url(JSON.stringify(payload));
  const signingInput = `${h}.${p}`;
  const sig = alg === 'none' ? '' : createHmac('sha256', key).update(signingInput).digest('base64url');
  return `${signingInput}.${sig}`;
}

/** Split a JWT and check its HS256 signature against `key`. */
export function inspectJwt(token, key = AUTH_KEY) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return { ok: false, reason: `expected 3 segments, got ${parts.length}` };
  const [h, p, s] = parts;
  let header;
  let payload;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch (err) {
    return { ok: false, reason: `undecodable segment: ${err.message}` };
  }
  const expected = createHmac('sha256', key).update(`${h}.${p}`).digest('base64url');
  // Accept padded base64url too, just in case; compare canonical forms.
  const got = s.replace(/=+$/, '');
  return { ok: true, header, payload, signatureValid: got === expected };
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * An authEngine for socketcluster-client that keeps tokens in memory and
 * records every call. Preload it to make the client send a token in its
 * #handshake.
 */
export class MemoryAuthEngine {
  constructor(initial = {}) {
    this.store = new Map(Object.entries(initial));
    this.calls = [];
  }

  saveToken(name, token) {
    this.calls.push(['save', name, token]);
    this.store.set(name, token);
    return Promise.resolve(token);
  }

  removeToken(name) {
    this.calls.push(['remove', name]);
    const old = this.store.has(name) ? this.store.get(name) : null;
    this.store.delete(name);
    return Promise.resolve(old);
  }

  loadToken(name) {
    this.calls.push(['load', name]);
    return Promise.resolve(this.store.has(name) ? this.store.get(name) : null);
  }
}

/**
 * Resolve with cond()'s first truthy value, re-checking whenever any of the
 * given collectors records an item.
 */
export function waitUntil(collectors, cond, ms, what) {
  const first = cond();
  if (first) return Promise.resolve(first);
  let waker;
  const p = new Promise((resolve) => {
    waker = () => {
      const r = cond();
      if (r) resolve(r);
    };
    for (const c of collectors) c._wakers.add(waker);
  });
  return withTimeout(p, ms, what).finally(() => {
    for (const c of collectors) c._wakers.delete(waker);
  });
}
