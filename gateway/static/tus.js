/*
 * The page's tus 1.0.0 transport: one file, sent as one upload or as several partial
 * uploads at once (tus concatenation), with retries, stall detection and resume.
 *
 * To a gateway whose round trip is AUTO_RTT_MS or more, a file of at least PARALLEL_MIN
 * bytes is cut into up to MAX_STREAMS ranges, each its own partial upload
 * (`Upload-Concat: partial`) sent at the same time as the others; a final POST
 * (`Upload-Concat: final;URL ...`) joins them. Smaller files, and every file to a gateway
 * close by, go up as one upload. Every PATCH takes one of the link's slots (the gateway's
 * GATEWAY_LINK_CONCURRENCY, handed to the page), so all files of the page together
 * never run more PATCHes at once than the link allows.
 *
 * Each PATCH body is the file's own slice (a Blob the browser streams from disk): by
 * default the rest of the range in one PATCH; with the page's ?chunk= knob, PATCHes of
 * that size with `Upload-Checksum: sha256 ...` taken in the hash worker, the next one's
 * while one is on the wire. A request whose upload makes no progress for stallMs
 * is aborted; errors are retried with backoff after asking the gateway for its offset
 * (HEAD), and the row says "Reconnecting in N s" while it waits. The partial uploads'
 * URLs are kept in localStorage, so a reload resumes each of them where it stopped.
 */
import { base64 } from './sha256.js';

export const MiB = 1024 * 1024;
export const MAX_STREAMS = 4;
export const PARALLEL_MIN = 64 * MiB;
/* Partial uploads pay off only on a path where one connection is held back by its round
 * trip: to a gateway that answers faster than this, a file goes as one upload (joining
 * partials costs the gateway one more pass over the file). The same rule as the CLI's. */
export const AUTO_RTT_MS = 30;
/* Ranges of a file sent in whole-range PATCHes start on multiples of this. */
export const ALIGN = 16 * MiB;
const MIN_RANGE = 5 * MiB; // every partial upload but the last: at least one S3 part
const MAX_ATTEMPTS = 12;
const MAX_BAD_CHECKSUMS = 5; // 460s in a row for the same offset before giving up
const LOCK_PATIENCE_MS = 120000; // a dead request's lease runs out in seconds; a live writer's never
const RESPONSE_MS = 60000; // a PATCH whose body is all sent waits this long for the answer
const REQUEST_MS = 90000; // HEAD, POST, DELETE
const STORE_PREFIX = 'upload-gateway:tus:';

export function storageKey(ticket, name, file) {
  return STORE_PREFIX + JSON.stringify([ticket, name, file.size, file.lastModified]);
}

export function store(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch (e) { /* storage full or disabled: resume after reload is then not possible */ }
}

export function recall(key) {
  try { return JSON.parse(localStorage.getItem(key) || 'null'); } catch (e) { return null; }
}

function metaValue(text) {
  return base64(new TextEncoder().encode(text));
}

function errorMessage(xhr, fallback) {
  try {
    const body = JSON.parse(xhr.responseText);
    if (body && body.error && body.error.message) return body.error.message;
  } catch (e) { /* not JSON */ }
  return fallback;
}

export function fatal(message, restartOnRetry) {
  const e = new Error(message); e.fatal = true; e.restartOnRetry = !!restartOnRetry; return e;
}

function stopped() {
  const e = new Error('stopped'); e.stopped = true; return e;
}

/*
 * An XHR as a promise. A request with a body is aborted when its upload makes no
 * progress for `stallMs` (err.stalled); once the body is all sent, the gateway has
 * RESPONSE_MS to make it durable and answer.
 */
export function request(method, url, opts = {}) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    let watchdog = null, stalled = false;
    const arm = (ms) => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => { stalled = true; xhr.abort(); }, ms);
    };
    xhr.open(method, url, true);
    xhr.setRequestHeader('Tus-Resumable', '1.0.0');
    const headers = opts.headers || {};
    Object.keys(headers).forEach((k) => xhr.setRequestHeader(k, headers[k]));
    const body = opts.body == null ? null : opts.body;
    if (body) {
      xhr.upload.onprogress = (ev) => { arm(opts.stallMs); if (opts.onProgress) opts.onProgress(ev.loaded); };
      xhr.upload.onload = () => arm(RESPONSE_MS);
    }
    xhr.onload = () => { clearTimeout(watchdog); resolve(xhr); };
    xhr.onerror = xhr.onabort = xhr.ontimeout = () => {
      clearTimeout(watchdog);
      const err = new Error(stalled ? 'stalled' : 'network');
      err.network = true; err.stalled = stalled;
      reject(err);
    };
    arm(body ? opts.stallMs : REQUEST_MS);
    xhr.send(body);
  });
  promise.xhr = xhr;
  return promise;
}

/*
 * tus termination (DELETE), repeated while the gateway says the upload is busy (423: the
 * request just aborted still holds its write lease) or cannot be reached. What is never
 * removed here expires with the link and `gateway sweep` removes it.
 */
export async function terminate(url) {
  for (let attempt = 1; attempt <= 10; attempt++) {
    let wait = 500 * attempt;
    try {
      const xhr = await request('DELETE', url);
      if (xhr.status < 500 && xhr.status !== 423 && xhr.status !== 429 && xhr.status !== 409) return;
      const after = Number(xhr.getResponseHeader('Retry-After'));
      if (after > 0) wait = Math.min(after, 10) * 1000;
    } catch (e) { /* network: try again */ }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/* The shortest of three OPTIONS round trips to the tus endpoint, in ms (Infinity if none). */
export async function roundTrip(endpoint) {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const began = performance.now();
    try {
      const xhr = await request('OPTIONS', endpoint);
      if (xhr.status < 200 || xhr.status >= 300) return Infinity;
    } catch (e) {
      return Infinity;
    }
    best = Math.min(best, performance.now() - began);
  }
  return best;
}

/* A first-come first-served counter of PATCHes in flight on the link. */
export class Slots {
  constructor(n) { this.free = Math.max(1, n); this.waiting = []; }
  acquire() {
    if (this.free > 0) { this.free--; return Promise.resolve(this.releaser()); }
    return new Promise((resolve) => this.waiting.push(resolve)).then(() => this.releaser());
  }
  releaser() {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next) next(); else this.free++;
    };
  }
}

/* Cut `size` bytes into at most `streams` ranges of whole PATCHes, each but the last >= MIN_RANGE. */
export function split(size, streams, unit) {
  const step = Math.ceil(MIN_RANGE / unit) * unit;
  const count = Math.min(streams, Math.floor(size / step));
  if (count < 2) return [{ start: 0, end: size }];
  const units = Math.ceil(size / unit);
  const spans = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const take = Math.floor(units / count) + (i < units % count ? 1 : 0);
    const end = i === count - 1 ? size : Math.min(size, at + take * unit);
    spans.push({ start: at, end });
    at = end;
  }
  return spans;
}

class Part {
  constructor(start, end, url) {
    this.start = start; this.end = end; this.url = url || null;
    this.offset = 0; this.sending = 0; this.xhr = null; this.ahead = null;
    this.attempt = 0; this.badChecksums = 0; this.badChecksumAt = -1; this.lockedSince = 0;
  }
  get length() { return this.end - this.start; }
  get done() { return this.url !== null && this.offset >= this.length; }
  state() { return { url: this.url, start: this.start, end: this.end }; }
}

/*
 * One file on its way. `ui` gets progress(sentBytes), note(text or null) and counters;
 * start() resolves with the gateway's file id once the gateway has the whole file, and
 * rejects with err.fatal (give up, say why) or err.stopped (paused or cancelled).
 */
export class FileUpload {
  constructor(file, name, opts) {
    this.file = file; this.name = name; this.size = file.size;
    this.opts = opts; // endpoint, filesUrl, key, maxSize, expiresAt, patchSize, streams, parallelMin, ready, stallMs, slots, hashing
    this.ui = opts.ui;
    this.key = opts.key;
    this.parts = null; this.partial = false; this.finalUrl = null;
    this.fileId = null; this.digest = null; this.hashKind = null;
    this.gen = 0; this.sleepers = new Set(); this.hashJob = null;
    this.reconnects = 0; this.stalls = 0;
  }

  /* ---------- whole-file hash ---------- */

  startHash() {
    if (this.hashJob) return;
    this.hashJob = this.opts.hashing.whole(this.file, (at) => { this.hashed = at; });
    this.hashJob.promise.catch(() => { /* reported when awaited */ });
  }

  async hexDigest() {
    this.startHash();
    try {
      const result = await this.hashJob.promise;
      this.digest = result.hex; this.hashKind = result.kind;
      return this.digest;
    } catch (e) {
      this.hashJob = null;
      throw fatal('the file could not be read (was it changed or moved?). Choose it again.');
    }
  }

  /* ---------- state kept for resume after a reload ---------- */

  save() {
    if (this.partial) {
      store(this.key, {
        name: this.name, size: this.size, at: Date.now(),
        parts: this.parts.map((p) => p.state()), final: this.finalUrl
      });
    } else if (this.parts[0].url) {
      store(this.key, { url: this.parts[0].url, name: this.name, size: this.size, at: Date.now() });
    }
  }

  forget() {
    store(this.key, null);
    this.parts = null; this.finalUrl = null; this.partial = false;
  }

  plan() {
    const saved = recall(this.key);
    if (saved && saved.parts && saved.parts.length) {
      this.partial = true;
      this.parts = saved.parts.map((p) => new Part(p.start, p.end, p.url));
      this.finalUrl = saved.final || null;
      return;
    }
    if (saved && saved.url) { // one upload, begun before: go on with it as it is
      this.partial = false;
      this.parts = [new Part(0, this.size, saved.url)];
      return;
    }
    const unit = isFinite(this.opts.patchSize) ? this.opts.patchSize : ALIGN;
    const spans = this.size >= this.opts.parallelMin ? split(this.size, this.opts.streams, unit) : [{ start: 0, end: this.size }];
    this.partial = spans.length > 1;
    this.parts = spans.map((s) => new Part(s.start, s.end));
  }

  sent() {
    if (!this.parts) return 0;
    return this.parts.reduce((n, p) => n + Math.min(p.length, p.offset + p.sending), 0);
  }

  /* ---------- control ---------- */

  alive(gen) {
    if (gen !== this.gen) throw stopped();
  }

  stop() {
    this.gen++;
    if (this.parts) this.parts.forEach((p) => { p.ahead = null; if (p.xhr) p.xhr.abort(); });
    this.sleepers.forEach((wake) => wake());
  }

  cancel() {
    this.stop();
    if (this.hashJob) { this.hashJob.stop(); this.hashJob = null; }
    const urls = (this.parts || []).map((p) => p.url).filter(Boolean);
    this.forget();
    urls.forEach((url) => terminate(url));
  }

  wakeAll() {
    this.sleepers.forEach((wake) => wake());
  }

  sleep(ms, gen, tick) {
    return new Promise((resolve) => {
      const until = Date.now() + ms;
      let timer = null;
      const done = () => { clearTimeout(timer); this.sleepers.delete(done); resolve(); };
      const step = () => {
        const left = until - Date.now();
        if (left <= 0 || gen !== this.gen) { done(); return; }
        if (tick) tick(left);
        timer = setTimeout(step, Math.min(left, 1000));
      };
      this.sleepers.add(done);
      step();
    }).then(() => this.alive(gen));
  }

  /* ---------- the run ---------- */

  async start() {
    const gen = ++this.gen;
    if (this.size > this.opts.maxSize) {
      throw fatal('the file is larger than this link allows (' + this.opts.formatSize(this.opts.maxSize) + ').');
    }
    this.startHash();
    if (this.opts.ready) { // how far the gateway is decides partials or not
      this.opts.parallelMin = await this.opts.ready;
      this.alive(gen);
    }
    if (!this.parts) this.plan();
    const needHead = new Set(this.parts.filter((p) => p.url));
    try {
      // Every part was complete when the final upload was made: only joining is left.
      if (this.partial && this.finalUrl) return this.done(await this.concatenate(gen));
      await this.all(this.parts.map((p) => this.runPart(p, gen, needHead.has(p))), gen);
      if (this.partial) return this.done(await this.concatenate(gen));
      if (!this.fileId) await this.headPart(this.parts[0], gen);
      return this.done(this.fileId);
    } catch (err) {
      if (err.found) return this.done(this.fileId);
      throw err;
    }
  }

  /* Like Promise.all, but the first failure stops the other parts at once. */
  all(promises, gen) {
    return Promise.all(promises.map((p) => p.catch((err) => {
      if (gen === this.gen) this.stop();
      throw err;
    })));
  }

  async done(fileId) {
    this.fileId = fileId || this.fileId;
    this.ui.checking();
    await this.hexDigest();
    store(this.key, null);
    return this.fileId;
  }

  check(xhr, ok, onUpload) {
    const st = xhr.status;
    if (ok.indexOf(st) >= 0) return;
    let err;
    if (st === 0 || st >= 500 || st === 409 || st === 423 || st === 429 || st === 408) {
      err = new Error('HTTP ' + st); err.network = true; err.locked = st === 423;
      const after = Number(xhr.getResponseHeader('Retry-After'));
      if (after > 0) err.retryAfter = Math.min(after, 60) * 1000;
      throw err;
    }
    if (st === 404 || st === 410) {
      if (onUpload) { err = new Error('gone'); err.gone = true; throw err; }
      if (st === 410) throw fatal('this upload link has expired. Ask the support team for a new one.');
      throw fatal('this upload link is not valid any more. Ask the support team for a new one.');
    }
    if (st === 403) throw fatal('this upload link has expired. Ask the support team for a new one.');
    if (st === 413) throw fatal('the file is larger than this link allows (' + this.opts.formatSize(this.opts.maxSize) + ').');
    if (st === 460) { err = new Error('checksum'); err.checksum = true; throw err; }
    throw fatal(errorMessage(xhr, 'the server refused the upload (HTTP ' + st + ').'));
  }

  async send(part, method, url, opts, gen) {
    this.alive(gen);
    const req = request(method, url, opts);
    if (part) part.xhr = req.xhr;
    try {
      return await req;
    } finally {
      if (part && part.xhr === req.xhr) part.xhr = null;
      this.alive(gen);
    }
  }

  metadata() {
    let meta = 'filename ' + metaValue(this.name);
    if (this.file.type) meta += ',filetype ' + metaValue(this.file.type);
    return meta;
  }

  async createPart(part, gen) {
    const headers = { 'Upload-Length': String(part.length), 'Upload-Metadata': this.metadata() };
    if (this.partial) headers['Upload-Concat'] = 'partial';
    const xhr = await this.send(part, 'POST', this.opts.endpoint, { headers }, gen);
    this.check(xhr, [201]);
    const loc = xhr.getResponseHeader('Location');
    if (!loc) throw fatal('the server did not say where to send the file.');
    part.url = new URL(loc, this.opts.endpoint).href;
    part.offset = Number(xhr.getResponseHeader('Upload-Offset')) || 0;
    this.fileId = xhr.getResponseHeader('X-Gateway-File-Id') || this.fileId;
    this.save();
  }

  async headPart(part, gen) {
    const xhr = await this.send(part, 'HEAD', part.url, { headers: { 'Cache-Control': 'no-store' } }, gen);
    this.check(xhr, [200, 204], true);
    const off = Number(xhr.getResponseHeader('Upload-Offset'));
    if (!(off >= 0)) throw fatal('the server gave no upload offset.');
    const len = xhr.getResponseHeader('Upload-Length');
    if (len !== null && Number(len) !== part.length) { const e = new Error('length'); e.gone = true; throw e; }
    part.offset = off;
    if (!this.partial) this.fileId = xhr.getResponseHeader('X-Gateway-File-Id') || this.fileId;
    this.ui.progress();
  }

  async runPart(part, gen, needHead) {
    for (;;) {
      this.alive(gen);
      if (Date.now() / 1000 > this.opts.expiresAt) throw fatal('this upload link has expired. Ask the support team for a new one.');
      try {
        if (!part.url) { await this.createPart(part, gen); needHead = false; continue; }
        if (needHead) { await this.headPart(part, gen); needHead = false; continue; }
        if (part.offset >= part.length) { this.ui.note(null, part); return; }
        await this.sendChunk(part, gen);
        part.attempt = 0; part.badChecksums = 0; part.badChecksumAt = -1; part.lockedSince = 0;
        this.ui.note(null, part);
      } catch (err) {
        part.ahead = null; part.sending = 0;
        if (err.stopped || err.fatal || gen !== this.gen) throw err;
        needHead = await this.recover(part, err, gen);
      }
    }
  }

  /* After a failed request of `part`: wait as the error asks; whether to HEAD first. */
  async recover(part, err, gen) {
    if (err.gone) {
      // The gateway no longer knows this upload: finished already (its answer was lost)
      // if a receipt with this file's hash exists, else expired: send this part again.
      if (await this.lookup(gen)) { const e = new Error('found'); e.found = true; throw e; }
      part.url = null; part.offset = 0;
      if (!this.partial) store(this.key, null);
      this.finalUrl = null;
      this.save();
      return false;
    }
    if (err.checksum) {
      // The gateway discarded that PATCH. Ask it where the upload stands (HEAD) and send
      // the chunk at that offset again, read anew from the file. Only the same offset
      // failing again and again means the data is damaged on the way.
      if (err.offset !== part.badChecksumAt) { part.badChecksumAt = err.offset; part.badChecksums = 0; }
      if (++part.badChecksums >= MAX_BAD_CHECKSUMS) throw fatal('the data kept arriving damaged. Check the connection and retry.');
      await this.sleep(250 * part.badChecksums, gen);
      return true;
    }
    if (err.locked) {
      // Another request holds this upload's write lease: one cut off by a gateway crash or
      // a stalled connection keeps it until it runs out (seconds); this file being sent
      // from another window keeps it for good. Neither is a failed connection.
      if (!part.lockedSince) part.lockedSince = Date.now();
      if (Date.now() - part.lockedSince > LOCK_PATIENCE_MS) {
        throw fatal('this file is being uploaded from somewhere else right now (another window?). Close that, then press Retry.');
      }
      this.ui.note('the server is busy with this file, waiting…', part);
      await this.sleep((err.retryAfter || 1000) * (0.8 + Math.random() * 0.4), gen);
      return true;
    }
    part.attempt++;
    if (part.attempt > MAX_ATTEMPTS) throw fatal('the connection to the server keeps failing. Check your network and press Retry.');
    await this.waitToRetry(part, err, gen);
    return !!part.url;
  }

  async waitToRetry(part, err, gen) {
    if (!navigator.onLine) {
      part.attempt--; // waiting for the network is not a failed attempt
      this.ui.note('offline, waiting for the network…', part);
      await this.sleep(3600 * 1000, gen);
      return;
    }
    this.reconnects++;
    if (err.stalled) this.stalls++;
    this.ui.counters(this.reconnects, this.stalls);
    let delay = err.retryAfter || Math.min(30000, 500 * Math.pow(2, part.attempt - 1));
    delay = delay * (0.8 + Math.random() * 0.4);
    const why = err.stalled ? 'No progress for ' + Math.round(this.opts.stallMs / 1000) + ' s. ' : 'Connection lost. ';
    await this.sleep(delay, gen, (left) => {
      this.ui.note(why + 'Reconnecting in ' + Math.max(1, Math.ceil(left / 1000)) + ' s…', part);
    });
    this.ui.note(why + 'Reconnecting…', part);
  }

  /*
   * One PATCH of `part` from the offset the gateway last reported. With a finite
   * patchSize (the page's ?chunk=) its checksum was taken from the same range in the hash
   * worker (while the previous PATCH was on the wire), so a file that changed in between
   * is caught by the gateway (460) and read again. By default the PATCH carries the rest
   * of the part, streamed from disk by the browser as `curl -T` sends a file: nothing
   * waits between requests, and the whole file's SHA-256 is checked against the receipt.
   */
  async sendChunk(part, gen) {
    const whole = !isFinite(this.opts.patchSize);
    const from = part.offset, to = whole ? part.length : Math.min(from + this.opts.patchSize, part.length);
    const a = part.start + from, b = part.start + to;
    let sum = null;
    if (!whole) {
      const ahead = part.ahead;
      part.ahead = null;
      sum = await (ahead && ahead.a === a && ahead.b === b ? ahead.sum : this.opts.hashing.checksum(this.file, a, b));
      this.alive(gen);
    }
    const release = await this.opts.slots.acquire();
    try {
      this.alive(gen);
      if (!whole && to < part.length) {
        const next = Math.min(b + this.opts.patchSize, part.end);
        const nextSum = this.opts.hashing.checksum(this.file, b, next);
        nextSum.catch(() => { /* read again when its turn comes */ });
        part.ahead = { a: b, b: next, sum: nextSum };
      }
      const headers = {
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': String(from)
      };
      if (sum !== null) headers['Upload-Checksum'] = 'sha256 ' + sum;
      // The whole file as the body when the PATCH carries all of it: Chromium's network
      // service then reads the file from disk itself, where a slice (a Blob) is read by
      // the browser process and piped over: about 1 CPU-second more per GiB.
      const body = a === 0 && b === this.size ? this.file : this.file.slice(a, b);
      let xhr;
      try {
        xhr = await this.send(part, 'PATCH', part.url, {
          headers,
          body,
          stallMs: this.opts.stallMs,
          onProgress: (loaded) => { part.sending = Math.min(loaded, to - from); this.ui.progress(); }
        }, gen);
      } finally {
        part.sending = 0;
      }
      try {
        this.check(xhr, [200, 204], true);
      } catch (err) {
        err.offset = from;
        throw err;
      }
      const off = Number(xhr.getResponseHeader('Upload-Offset'));
      part.offset = off >= 0 ? off : to;
      if (!this.partial) this.fileId = xhr.getResponseHeader('X-Gateway-File-Id') || this.fileId;
      this.ui.progress();
    } finally {
      release();
    }
  }

  /* The final upload: POST it once, then ask (HEAD) until the gateway says it is a file. */
  async concatenate(gen) {
    const part = { attempt: 0, lockedSince: 0, url: null };
    for (;;) {
      this.alive(gen);
      try {
        if (!this.finalUrl) {
          const urls = this.parts.map((p) => p.url).join(' ');
          const xhr = await this.send(null, 'POST', this.opts.endpoint, {
            headers: { 'Upload-Concat': 'final;' + urls, 'Upload-Metadata': this.metadata() }
          }, gen);
          this.check(xhr, [201], true);
          const loc = xhr.getResponseHeader('Location');
          if (!loc) throw fatal('the server did not say where the file is.');
          this.finalUrl = new URL(loc, this.opts.endpoint).href;
          this.save();
          const id = xhr.getResponseHeader('X-Gateway-File-Id');
          if (id) return id;
        }
        const id = await this.headFinal(gen);
        if (id) return id;
        this.ui.note('joining the parts…', part);
        await this.sleep(1000, gen);
      } catch (err) {
        if (err.stopped || err.fatal || gen !== this.gen) throw err;
        if (err.gone) {
          if (await this.lookup(gen)) return this.fileId;
          throw fatal('the server lost parts of this file. Press Retry to send it again.', true);
        }
        part.attempt++;
        if (part.attempt > MAX_ATTEMPTS) throw fatal('the connection to the server keeps failing. Check your network and press Retry.');
        await this.waitToRetry(part, err, gen);
      }
    }
  }

  /* HEAD on the final upload: its file id once assembled, else null. */
  async headFinal(gen) {
    const xhr = await this.send(null, 'HEAD', this.finalUrl, { headers: { 'Cache-Control': 'no-store' } }, gen);
    if (xhr.status === 404 || xhr.status === 410) { this.finalUrl = null; this.save(); return null; }
    this.check(xhr, [200, 204], true);
    return xhr.getResponseHeader('X-Gateway-File-Id');
  }

  /* Is there already a receipt for exactly this file (same size and SHA-256)? */
  async lookup(gen) {
    const digest = await this.hexDigest();
    this.alive(gen);
    try {
      const xhr = await this.send(null, 'GET', this.opts.filesUrl, {}, gen);
      if (xhr.status !== 200) return false;
      const files = JSON.parse(xhr.responseText).files || [];
      const found = files.find((f) => f.sha256 === digest && f.size === this.size);
      if (found) this.fileId = found.file_id;
      return !!found;
    } catch (e) {
      if (e.stopped) throw e;
      return false;
    }
  }
}
