// The connection to the frontend: one socketcluster-client socket (JSON codec, /socketcluster/ on the
// page's own host and port), the session (token in localStorage, `login {resume}` on every connect),
// and the channels the app wants. socketcluster-client reconnects by itself; on every (re)connect
// this module logs the socket back in first, because the server refuses subscriptions of an
// unauthenticated socket, and only then asks for the channels (`waitForAuth`), so the client's own
// resubscription waits for the login too. Each channel's `subscribe` event tells the app to fill
// whatever it missed while the socket was away.

import * as socketClusterClient from './socketcluster-client.min.js';

/** Set when the frontend was built without npm: the library is a placeholder that says so. */
export const libraryMissing = socketClusterClient.missing || null;

const SESSION_KEY = 'chat.session';
// socketcluster-client keeps the socket's signed token here; it is dropped on logout.
const SC_TOKEN_KEY = 'chat.socketToken';
/** A resume refused for a reason other than the session is tried again this often (1, 2, 4 … s). */
const RESUME_RETRIES = 5;
/** How long one RPC may take before it is reported as failed. */
const CALL_TIMEOUT_MS = 15000;

export class Connection {
  constructor({ onState, onLogin, onLoggedOut }) {
    this.onState = onState;
    this.onLogin = onLogin;
    this.onLoggedOut = onLoggedOut;
    this.me = null;
    this.channels = new Map(); // name -> {channel, handlers: {data, subscribe}}
    this.renewTimer = null;
    const secure = location.protocol === 'https:';
    this.socket = socketClusterClient.create({
      hostname: location.hostname,
      port: Number(location.port) || (secure ? 443 : 80),
      secure,
      path: '/socketcluster/',
      authTokenName: SC_TOKEN_KEY,
      autoReconnect: true,
      autoReconnectOptions: { initialDelay: 500, randomness: 500, multiplier: 1.5, maxDelay: 8000 },
      ackTimeout: CALL_TIMEOUT_MS,
    });
    this.listen('connecting', () => this.onState('connecting'));
    this.listen('connect', () => this.connected());
    this.listen('close', () => {
      this.onState(this.socket.state === 'connecting' ? 'connecting' : 'disconnected');
      // socketcluster-client does not reconnect after code 1000, which the server uses when it ends a
      // session (an admin's logout, deactivation) but also when it closes a socket for good reasons of
      // its own; try once more after a pause: a revoked session's resume is refused and the login shows.
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        if (this.socket.state === 'closed' && !this.loggingOut) this.socket.connect();
      }, 2000);
    });
    this.listen('error', () => {});
  }

  listen(event, fn) {
    (async () => {
      for await (const ev of this.socket.listener(event)) {
        try {
          fn(ev);
        } catch (err) {
          console.error(`handling ${event}`, err);
        }
      }
    })();
  }

  get session() {
    try {
      return JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    } catch {
      return null;
    }
  }

  set session(v) {
    if (v) localStorage.setItem(SESSION_KEY, JSON.stringify(v));
    else localStorage.removeItem(SESSION_KEY);
  }

  async connected(attempt = 0) {
    const session = this.session;
    if (!session) {
      this.onState('connected');
      this.onLoggedOut(null);
      return;
    }
    try {
      await this.resume(session);
      this.onState('connected');
    } catch (err) {
      if (isAuthError(err)) {
        this.session = null;
        this.onState('connected');
        this.onLoggedOut('Your session ended; sign in again.');
      } else if (this.socket.state === 'open' && attempt < RESUME_RETRIES) {
        // Refused for another reason (a rate limit, a store error): the channels wait for the login, so
        // try again shortly rather than sit connected and logged out.
        this.onState('connecting');
        setTimeout(() => {
          if (this.socket.state === 'open' && this.session) this.connected(attempt + 1);
        }, 1000 * 2 ** attempt);
      } else {
        // The socket dropped mid-login: the next connect tries again.
        this.onState(this.socket.state === 'open' ? 'connected' : 'connecting');
      }
    }
  }

  async resume(session) {
    const reply = await this.socket.invoke('login', { resume: session.token });
    this.loggedIn(reply, session.token);
  }

  loggedIn(reply, token) {
    this.me = { id: reply.id, username: reply.username, roles: reply.roles || [] };
    this.sessionId = reply.sessionId;
    this.session = { token, uid: reply.id, username: reply.username };
    this.scheduleRenew(reply.socketTokenExpires);
    this.onLogin(this.me);
  }

  // The socket token lasts minutes (`--chat-token-ttl-secs`); a `login {resume}` a minute before it runs
  // out renews it, so a socket that reconnects later still has a valid one in its handshake.
  scheduleRenew(expires) {
    clearTimeout(this.renewTimer);
    if (typeof expires !== 'number') return;
    const at = expires > 1e12 ? expires : expires * 1000;
    const delay = Math.max(30000, at - Date.now() - 60000);
    this.renewTimer = setTimeout(() => {
      const s = this.session;
      if (s && this.socket.state === 'open') this.resume(s).catch(() => {});
    }, Math.min(delay, 2 ** 31 - 1));
  }

  async login(user, password) {
    if (this.socket.state === 'closed') this.socket.connect();
    const reply = await this.socket.invoke('login', { user, password });
    this.loggedIn(reply, reply.token);
    return this.me;
  }

  async logout() {
    clearTimeout(this.renewTimer);
    this.loggingOut = true;
    try {
      await this.call('logout', {});
    } catch {
      // The session ends locally whatever the server says.
    }
    this.session = null;
    this.me = null;
    localStorage.removeItem(SC_TOKEN_KEY);
    for (const name of [...this.channels.keys()]) this.unsubscribe(name);
    // The server closes a logged-out socket (code 1000, no auto-reconnect); open a fresh one for the next login.
    this.socket.disconnect();
    this.loggingOut = false;
    this.socket.connect();
  }

  /** An RPC; rejects with the server's error (`err.error` is the stable id). */
  call(method, data) {
    return this.socket.invoke(method, data ?? {});
  }

  /** Subscribes to `name` (after login) and keeps the subscription across reconnects. */
  subscribe(name, onData, onSubscribe) {
    if (this.channels.has(name)) return;
    const channel = this.socket.subscribe(name, { waitForAuth: true });
    const entry = { channel, alive: true };
    this.channels.set(name, entry);
    (async () => {
      for await (const data of channel) {
        if (!entry.alive) break;
        try {
          onData(data);
        } catch (err) {
          console.error(`event on ${name}`, err);
        }
      }
    })();
    (async () => {
      for await (const _ of channel.listener('subscribe')) {
        if (!entry.alive) break;
        if (onSubscribe) onSubscribe();
      }
    })();
    (async () => {
      for await (const { error } of channel.listener('subscribeFail')) {
        if (!entry.alive) break;
        console.warn(`subscribing to ${name} failed`, error);
      }
    })();
  }

  unsubscribe(name) {
    const entry = this.channels.get(name);
    if (!entry) return;
    entry.alive = false;
    this.channels.delete(name);
    this.socket.unsubscribe(name);
    entry.channel.close();
  }

  /** Resubscribes channels the server dropped (a failed subscribe removes them client-side). */
  ensureSubscribed() {
    for (const name of this.channels.keys()) {
      if (this.socket.getChannelState(name) === 'unsubscribed') this.socket.subscribe(name, { waitForAuth: true });
    }
  }
}

export function isAuthError(err) {
  const id = err && (err.error || err.name);
  return id === 'error-unauthorized' || id === 'error-invalid-token' || id === 'error-session-expired';
}

export function errorText(err) {
  if (!err) return 'Something went wrong';
  if (err.error === 'error-too-many-requests') return 'Too many requests; wait a moment.';
  return err.message || String(err);
}
