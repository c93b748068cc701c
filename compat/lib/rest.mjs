// The chat's REST surface from node, for the scenario tests: JSON calls, a
// multipart upload generated on the fly (never held in memory) and a
// download hashed as it streams. Every request has a deadline.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';

const JSON_TIMEOUT_MS = 5_000;
/** Bytes per piece of a generated upload. */
const PIECE = 64 * 1024;

/** The headers that authenticate a REST call as a logged-in user (Rocket.Chat's names). */
export const authHeaders = (userId, token) => ({ 'X-User-Id': userId, 'X-Auth-Token': token });

function deadline(req, ms, what, reject) {
  const timer = setTimeout(() => {
    const err = new Error(`timed out after ${ms} ms: ${what}`);
    req.destroy(err);
    reject(err);
  }, ms);
  return () => clearTimeout(timer);
}

/** A JSON request on 127.0.0.1; resolves {status, body} (body parsed when it is JSON). */
export function restJson(port, method, path, { headers = {}, body, timeoutMs = JSON_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: '127.0.0.1',
      port,
      method,
      path,
      agent: false,
      headers: {
        ...headers,
        ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {}),
      },
    });
    const done = deadline(req, timeoutMs, `${method} ${path}`, reject);
    req.on('error', (err) => {
      done();
      reject(err);
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', (err) => {
        done();
        reject(err);
      });
      res.on('end', () => {
        done();
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode, headers: res.headers, body: parsed });
      });
    });
    req.end(payload || undefined);
  });
}

/**
 * POST a file of `size` bytes as multipart/form-data (part `file`, plus the
 * text `fields`), generated piece by piece while it is sent: a random 64 KiB
 * block with the piece number written into it, so no two pieces are equal
 * and memory stays at one piece plus the socket's buffers. Honours
 * backpressure. Resolves {status, body, sha256, size} (the hash of what was
 * sent).
 */
export function uploadGenerated(port, path, { headers = {}, filename, contentType = 'application/octet-stream', size, fields = {}, timeoutMs }) {
  const boundary = `----compat${randomBytes(12).toString('hex')}`;
  let head = '';
  for (const [name, value] of Object.entries(fields)) {
    head += `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  }
  head += `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: ${contentType}\r\n\r\n`;
  const tail = `\r\n--${boundary}--\r\n`;
  const length = Buffer.byteLength(head) + size + Buffer.byteLength(tail);
  const block = randomBytes(PIECE);
  const hash = createHash('sha256');

  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err) => {
      if (!settled) {
        settled = true;
        reject(err);
      }
    };
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path,
      agent: false,
      headers: { ...headers, 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Content-Length': length },
    });
    const done = deadline(req, timeoutMs, `upload of ${size} bytes to ${path}`, fail);
    req.on('error', (err) => {
      done();
      fail(err);
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        done();
        const text = Buffer.concat(chunks).toString('utf8');
        let body = text;
        try {
          body = JSON.parse(text);
        } catch {
          // keep the text
        }
        if (!settled) {
          settled = true;
          resolve({ status: res.statusCode, body, sha256: hash.digest('hex'), size });
        }
      });
    });

    (async () => {
      req.write(head);
      let sent = 0;
      for (let n = 0; sent < size && !settled; n++) {
        const len = Math.min(PIECE, size - sent);
        const piece = Buffer.from(block.subarray(0, len));
        if (len >= 4) piece.writeUInt32BE(n, 0);
        hash.update(piece);
        sent += len;
        if (!req.write(piece)) {
          // Wait for the socket to drain (or the request to fail: the deadline destroys it).
          await new Promise((r) => {
            req.once('drain', r);
            req.once('close', r);
          });
        }
      }
      if (!settled) req.end(tail);
    })().catch(fail);
  });
}

/** GET a file and hash it as it streams; resolves {status, headers, size, sha256, body (text, when not 200)}. */
export function downloadHashed(port, path, { headers = {}, timeoutMs }) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'GET', path, agent: false, headers });
    const done = deadline(req, timeoutMs, `download of ${path}`, reject);
    req.on('error', (err) => {
      done();
      reject(err);
    });
    req.on('response', (res) => {
      const hash = createHash('sha256');
      let size = 0;
      const small = [];
      res.on('data', (c) => {
        hash.update(c);
        size += c.length;
        if (res.statusCode !== 200 && size < 64 * 1024) small.push(c);
      });
      res.on('error', (err) => {
        done();
        reject(err);
      });
      res.on('end', () => {
        done();
        resolve({ status: res.statusCode, headers: res.headers, size, sha256: hash.digest('hex'), body: Buffer.concat(small).toString('utf8') });
      });
    });
    req.end();
  });
}
