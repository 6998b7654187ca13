/*
 * The upload page's own tus 1.0.0 client. No build step, no third-party code:
 * the page works straight from the Python package under a strict CSP.
 *
 * Each file: POST to create (or HEAD to resume a URL remembered in
 * localStorage), then PATCH chunks with `Upload-Checksum: sha256 ...`: each
 * body is the file's own slice, read and checksummed one chunk ahead.
 * Network errors, 5xx, 409 and 429 are retried with backoff (HEAD first for
 * the true offset); `offline`/`online` events pause and wake the retries.
 * 423 (another request holds the upload's write lease, e.g. one a killed
 * gateway left behind) is waited out as the gateway asks, for up to two
 * minutes, without counting as a failed attempt.
 * While chunks are read, the whole file's SHA-256 is computed incrementally
 * (crypto.subtle has no incremental API) and compared with the receipt.
 */
(function () {
  'use strict';

  var app = document.getElementById('app');
  if (!app || !window.XMLHttpRequest || !window.File || !window.Promise) return;
  document.documentElement.classList.add('js');

  var cfg = {
    endpoint: new URL(app.dataset.tusEndpoint, location.href).href,
    filesUrl: new URL(app.dataset.filesUrl, location.href).href,
    ticket: app.dataset.ticket,
    maxSize: Number(app.dataset.maxSize),
    expiresAt: Number(app.dataset.expiresAt),
    chunk: Number(app.dataset.chunkSize) || 8 * 1024 * 1024,
    parallel: Number(app.dataset.parallel) || 3
  };
  var MAX_ATTEMPTS = 12;
  var MAX_BAD_CHECKSUMS = 5; // 460s in a row for the same offset before giving up
  var LOCK_PATIENCE_MS = 120000; // a dead request's lease runs out in seconds; a live writer's never
  var STALL_MS = 30000;
  var STORE_PREFIX = 'upload-gateway:tus:';

  /* ---------------- SHA-256, incremental ---------------- */

  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);

  function Sha256() {
    this.h = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.w = new Int32Array(64);
    this.buf = new Uint8Array(64);
    this.bufLen = 0;
    this.length = 0;
  }

  Sha256.prototype.block = function (b, o) {
    var w = this.w, h = this.h, t, x, y;
    for (t = 0; t < 16; t++, o += 4) w[t] = (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
    for (t = 16; t < 64; t++) {
      x = w[t - 15]; y = w[t - 2];
      w[t] = ((((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
        (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w[t - 7] + w[t - 16]) | 0;
    }
    var a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7], t1, t2;
    for (t = 0; t < 64; t++) {
      t1 = (hh + ((((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
        ((e & f) ^ (~e & g)) | 0) + ((K[t] + w[t]) | 0)) | 0;
      t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
        ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = bb; bb = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + bb) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
  };

  Sha256.prototype.update = function (bytes) {
    var i = 0, n = bytes.length;
    this.length += n;
    if (this.bufLen) {
      var take = Math.min(64 - this.bufLen, n);
      this.buf.set(bytes.subarray(0, take), this.bufLen);
      this.bufLen += take; i = take;
      if (this.bufLen < 64) return this;
      this.block(this.buf, 0); this.bufLen = 0;
    }
    for (; i + 64 <= n; i += 64) this.block(bytes, i);
    if (i < n) { this.buf.set(bytes.subarray(i), 0); this.bufLen = n - i; }
    return this;
  };

  Sha256.prototype.digest = function () {
    var len = this.length, pad = new Uint8Array(((this.bufLen + 8) >> 6) * 64 + 64 - this.bufLen);
    pad[0] = 0x80;
    var hi = Math.floor(len / 0x20000000), lo = (len * 8) >>> 0, p = pad.length;
    pad[p - 8] = hi >>> 24; pad[p - 7] = hi >>> 16; pad[p - 6] = hi >>> 8; pad[p - 5] = hi;
    pad[p - 4] = lo >>> 24; pad[p - 3] = lo >>> 16; pad[p - 2] = lo >>> 8; pad[p - 1] = lo;
    this.update(pad);
    var out = new Uint8Array(32);
    for (var i = 0; i < 8; i++) {
      out[i * 4] = this.h[i] >>> 24; out[i * 4 + 1] = this.h[i] >>> 16;
      out[i * 4 + 2] = this.h[i] >>> 8; out[i * 4 + 3] = this.h[i];
    }
    return out;
  };

  function hex(bytes) {
    var s = '';
    for (var i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
    return s;
  }

  function base64(bytes) {
    var s = '';
    for (var i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
  }

  /* The per-chunk checksum: the browser's native digest where it exists (secure contexts). */
  function chunkChecksum(buffer) {
    if (window.crypto && crypto.subtle) {
      return crypto.subtle.digest('SHA-256', buffer).then(function (d) { return base64(new Uint8Array(d)); });
    }
    return Promise.resolve(base64(new Sha256().update(new Uint8Array(buffer)).digest()));
  }

  /* ---------------- small helpers ---------------- */

  function formatSize(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : Number(n.toFixed(n < 10 ? 1 : 0))) + ' ' + units[i];
  }

  function formatTime(s) {
    if (!isFinite(s) || s < 0) return '';
    s = Math.round(s);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.round((s % 3600) / 60) + ' min';
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function metaValue(text) {
    return base64(new TextEncoder().encode(text));
  }

  var announcer = document.getElementById('announce');
  function announce(text) {
    announcer.textContent = '';
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function store(key, value) {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* storage full or disabled: resume after reload is then not possible */ }
  }

  function recall(key) {
    try { return JSON.parse(localStorage.getItem(key) || 'null'); } catch (e) { return null; }
  }

  function errorMessage(xhr, fallback) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON */ }
    return fallback;
  }

  /* An XHR as a promise, with upload progress and a stall watchdog. */
  function request(method, url, opts) {
    opts = opts || {};
    var xhr = new XMLHttpRequest();
    var promise = new Promise(function (resolve, reject) {
      var watchdog = null;
      function kick() {
        clearTimeout(watchdog);
        watchdog = setTimeout(function () { xhr.abort(); }, STALL_MS);
      }
      xhr.open(method, url, true);
      xhr.setRequestHeader('Tus-Resumable', '1.0.0');
      var headers = opts.headers || {};
      Object.keys(headers).forEach(function (k) { xhr.setRequestHeader(k, headers[k]); });
      if (opts.onProgress) xhr.upload.onprogress = function (ev) { kick(); opts.onProgress(ev.loaded); };
      xhr.onload = function () { clearTimeout(watchdog); resolve(xhr); };
      xhr.onerror = xhr.onabort = xhr.ontimeout = function () {
        clearTimeout(watchdog);
        var err = new Error('network'); err.network = true; reject(err);
      };
      kick();
      xhr.send(opts.body == null ? null : opts.body);
    });
    promise.xhr = xhr;
    return promise;
  }

  /* ---------------- receipts polling ---------------- */

  var watching = [];
  var pollTimer = null, pollDelay = 1000;

  function watchReceipt(upload) {
    if (watching.indexOf(upload) < 0) watching.push(upload);
    pollDelay = 1000;
    if (!pollTimer) pollTimer = setTimeout(poll, 300);
  }

  function poll() {
    pollTimer = null;
    if (!watching.length) return;
    var xhr = new XMLHttpRequest();
    xhr.open('GET', cfg.filesUrl, true);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.onload = function () {
      if (xhr.status === 200) {
        var files = [];
        try { files = JSON.parse(xhr.responseText).files || []; } catch (e) { /* keep polling */ }
        watching = watching.filter(function (u) { return !u.applyReceipts(files); });
      }
      next();
    };
    xhr.onerror = next;
    xhr.send();
    function next() {
      if (!watching.length) return;
      pollDelay = Math.min(pollDelay * 1.3, 10000);
      pollTimer = setTimeout(poll, pollDelay);
    }
  }

  /* ---------------- one file ---------------- */

  var uploads = [];
  var nextId = 1;

  function Upload(file, name) {
    this.id = nextId++;
    this.file = file;
    this.name = name;
    this.size = file.size;
    this.key = STORE_PREFIX + JSON.stringify([cfg.ticket, name, file.size, file.lastModified]);
    this.state = 'queued';
    this.url = null;
    this.offset = 0;
    this.fileId = null;
    this.sha = new Sha256();
    this.hashed = 0;
    this.digest = null;
    this.attempt = 0;
    this.badChecksums = 0;
    this.badChecksumAt = -1;
    this.lockedSince = 0;
    this.samples = [];
    this.milestone = 0;
    this.current = null;
    this.wake = null;
    this.gen = 0;
    this.ahead = null; // the next chunk, read and checksummed while one is on the wire
    this.reading = Promise.resolve(); // chunk reads run one at a time, in order
    this.buildRow();
  }

  Upload.prototype.buildRow = function () {
    var self = this;
    var row = this.row = el('li', 'row');
    row.dataset.state = 'queued';
    var head = el('div', 'row-head');
    head.appendChild(el('span', 'name', this.name));
    head.appendChild(el('span', 'size muted', formatSize(this.size)));
    row.appendChild(head);
    this.bar = el('progress');
    this.bar.max = 100; this.bar.value = 0;
    this.bar.setAttribute('aria-label', 'Upload progress of ' + this.name);
    row.appendChild(this.bar);
    var foot = el('div', 'row-foot');
    this.stats = el('span', 'stats muted', 'Waiting…');
    foot.appendChild(this.stats);
    var actions = el('span', 'actions');
    function button(label, cls, fn) {
      var b = el('button', 'button small ' + cls, label);
      b.type = 'button';
      b.setAttribute('aria-label', label + ' ' + self.name);
      b.dataset.action = label.toLowerCase();
      b.addEventListener('click', fn);
      actions.appendChild(b);
      return b;
    }
    this.pauseBtn = button('Pause', 'secondary', function () { self.pause(); });
    this.resumeBtn = button('Resume', 'secondary', function () { self.resume(); });
    this.retryBtn = button('Retry', 'primary', function () { self.retry(); });
    this.cancelBtn = button('Cancel', 'danger', function () { self.cancel(); });
    foot.appendChild(actions);
    row.appendChild(foot);
    this.stateLine = el('p', 'state');
    this.stateLine.hidden = true;
    row.appendChild(this.stateLine);
    this.hashLine = el('p', 'hash');
    this.hashLine.hidden = true;
    row.appendChild(this.hashLine);
    this.render();
  };

  Upload.prototype.setState = function (state, text, tone) {
    this.state = state;
    this.row.dataset.state = state;
    this.row.className = 'row ' + state;
    if (text) {
      this.stateLine.textContent = text;
      this.stateLine.className = 'state ' + (tone || '');
      this.stateLine.hidden = false;
    } else {
      this.stateLine.hidden = true;
    }
    this.render();
  };

  Upload.prototype.render = function () {
    var s = this.state;
    this.pauseBtn.hidden = !(s === 'queued' || s === 'active' || s === 'waiting');
    this.resumeBtn.hidden = s !== 'paused';
    this.retryBtn.hidden = s !== 'failed';
    this.cancelBtn.hidden = !(s === 'queued' || s === 'active' || s === 'waiting' || s === 'paused' || s === 'failed');
  };

  Upload.prototype.progress = function (sent) {
    var pct = this.size ? Math.floor((sent / this.size) * 100) : 100;
    this.bar.value = pct;
    this.row.dataset.sent = String(sent);
    var now = performance.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
    var first = this.samples[0], dt = (now - first[0]) / 1000;
    var speed = dt > 0.2 ? (sent - first[1]) / dt : 0;
    var parts = [pct + '%'];
    if (speed > 0 && sent < this.size) {
      parts.push(formatSize(speed) + '/s');
      var left = formatTime((this.size - sent) / speed);
      if (left) parts.push(left + ' left');
    }
    this.stats.textContent = parts.join(' · ');
    var step = Math.floor(pct / 25) * 25;
    if (step > this.milestone && step < 100) {
      this.milestone = step;
      announce(this.name + ': ' + step + '% sent');
    }
  };

  Upload.prototype.sleep = function (ms) {
    var self = this;
    return new Promise(function (resolve) {
      var timer = setTimeout(done, ms);
      function done() { clearTimeout(timer); self.wake = null; resolve(); }
      self.wake = done;
    });
  };

  Upload.prototype.abortCurrent = function () {
    this.ahead = null;
    if (this.current) this.current.xhr.abort();
    if (this.wake) this.wake();
  };

  Upload.prototype.pause = function () {
    if (this.state === 'done' || this.state === 'canceled') return;
    var refocus = document.activeElement === this.pauseBtn;
    this.setState('paused', 'Paused', 'wait');
    if (refocus) this.resumeBtn.focus();
    this.stats.textContent = this.bar.value + '% · paused';
    this.abortCurrent();
    announce(this.name + ': paused');
    schedule();
  };

  Upload.prototype.resume = function () {
    if (this.state !== 'paused') return;
    var refocus = document.activeElement === this.resumeBtn;
    this.setState('queued');
    if (refocus) this.pauseBtn.focus();
    this.stats.textContent = 'Waiting…';
    announce(this.name + ': resuming');
    schedule();
  };

  Upload.prototype.retry = function () {
    if (this.state !== 'failed') return;
    if (this.restartOnRetry) this.forget();
    this.attempt = 0; this.badChecksums = 0; this.badChecksumAt = -1; this.lockedSince = 0;
    this.setState('queued');
    this.stats.textContent = 'Waiting…';
    schedule();
  };

  Upload.prototype.cancel = function () {
    var url = this.url;
    this.setState('canceled', 'Canceled', 'muted');
    this.stats.textContent = '';
    this.abortCurrent();
    this.forget();
    if (url) request('DELETE', url).catch(function () { /* the gateway sweeps it anyway */ });
    announce(this.name + ': canceled');
    schedule();
  };

  Upload.prototype.forget = function () {
    store(this.key, null);
    this.url = null;
    this.offset = 0;
  };

  Upload.prototype.fail = function (reason, restartOnRetry) {
    this.restartOnRetry = !!restartOnRetry;
    this.setState('failed', 'Failed: ' + reason, 'bad');
    this.stats.textContent = this.bar.value + '%';
    announce(this.name + ' failed: ' + reason);
    schedule();
  };

  function Fatal(message, restartOnRetry) {
    var e = new Error(message); e.fatal = true; e.restartOnRetry = restartOnRetry; return e;
  }

  /* Sort a finished response into: ok, retry later, start over, or give up. */
  Upload.prototype.check = function (xhr, okStatuses, onUpload) {
    var st = xhr.status;
    if (okStatuses.indexOf(st) >= 0) return;
    var err;
    if (st === 0 || st >= 500 || st === 409 || st === 423 || st === 429 || st === 408) {
      err = new Error('HTTP ' + st); err.network = true; err.locked = st === 423;
      var after = Number(xhr.getResponseHeader('Retry-After'));
      if (after > 0) err.retryAfter = Math.min(after, 60) * 1000;
      throw err;
    }
    if (st === 404 || st === 410) {
      if (onUpload) { err = new Error('gone'); err.gone = true; throw err; }
      if (st === 410) throw Fatal('this upload link has expired. Ask the support team for a new one.');
      throw Fatal('this upload link is not valid any more. Ask the support team for a new one.');
    }
    if (st === 403) throw Fatal('this upload link has expired. Ask the support team for a new one.');
    if (st === 413) throw Fatal('the file is larger than this link allows (' + formatSize(cfg.maxSize) + ').');
    if (st === 460) { err = new Error('checksum'); err.checksum = true; throw err; }
    throw Fatal(errorMessage(xhr, 'the server refused the upload (HTTP ' + st + ').'));
  };

  Upload.prototype.create = function () {
    var self = this;
    var meta = 'filename ' + metaValue(this.name);
    if (this.file.type) meta += ',filetype ' + metaValue(this.file.type);
    this.current = request('POST', cfg.endpoint, {
      headers: { 'Upload-Length': String(this.size), 'Upload-Metadata': meta }
    });
    return this.current.then(function (xhr) {
      self.check(xhr, [201]);
      var loc = xhr.getResponseHeader('Location');
      if (!loc) throw Fatal('the server did not say where to send the file.');
      self.url = new URL(loc, cfg.endpoint).href;
      self.offset = Number(xhr.getResponseHeader('Upload-Offset')) || 0;
      self.fileId = xhr.getResponseHeader('X-Gateway-File-Id') || self.fileId;
      store(self.key, { url: self.url, name: self.name, size: self.size, at: Date.now() });
    });
  };

  Upload.prototype.head = function () {
    var self = this;
    this.current = request('HEAD', this.url, { headers: { 'Cache-Control': 'no-store' } });
    return this.current.then(function (xhr) {
      self.check(xhr, [200, 204], true);
      var off = Number(xhr.getResponseHeader('Upload-Offset'));
      if (!(off >= 0)) throw Fatal('the server gave no upload offset.');
      var len = xhr.getResponseHeader('Upload-Length');
      if (len !== null && Number(len) !== self.size) {
        var e = new Error('length'); e.gone = true; throw e;
      }
      self.offset = off;
      self.fileId = xhr.getResponseHeader('X-Gateway-File-Id') || self.fileId;
      self.progress(off);
    });
  };

  /* Feed the whole-file hash with the bytes before `target` it has not seen yet. */
  Upload.prototype.hashUpTo = function (target) {
    var self = this;
    if (this.hashed >= target) return Promise.resolve();
    var end = Math.min(this.hashed + cfg.chunk, target);
    return this.file.slice(this.hashed, end).arrayBuffer().then(function (buf) {
      self.sha.update(new Uint8Array(buf));
      self.hashed = end;
      return self.hashUpTo(target);
    });
  };

  /*
   * Read the chunk at `start` from the file and take its checksum, feeding the whole-file
   * hash on the way. Reads are chained, so the whole-file hash always sees the file in order.
   * The bytes are let go here: the PATCH sends the file's own slice (below).
   */
  Upload.prototype.readChunk = function (start) {
    var self = this, end = Math.min(start + cfg.chunk, this.size);
    var chunk = this.reading.then(function () {
      return self.hashUpTo(start);
    }).then(function () {
      return self.file.slice(start, end).arrayBuffer();
    }).then(function (buf) {
      if (self.hashed === start) { self.sha.update(new Uint8Array(buf)); self.hashed = end; }
      return chunkChecksum(buf).then(function (sum) {
        return { start: start, end: end, sum: sum };
      });
    });
    this.reading = chunk.catch(function () { /* the next read starts anyway */ });
    return chunk;
  };

  /*
   * One PATCH from the offset the gateway last reported. The body is the file's own slice
   * (a Blob): the browser streams it from the file itself, several times faster than an
   * ArrayBuffer it must first copy between its processes. Its checksum was taken from the
   * same range, so a file that changed in between is caught by the gateway (460) and read
   * again. While a PATCH is on the wire the following chunk is read and checksummed (one
   * chunk ahead), and used only if the gateway then asks for exactly that offset; a retry
   * (after a 460, a lost connection or a gateway restart) reads its chunk afresh, so it
   * never repeats an old checksum, whatever offset the gateway reports.
   */
  Upload.prototype.sendChunk = function (gen) {
    var self = this, start = this.offset, end;
    var ahead = this.ahead;
    this.ahead = null;
    var ready = ahead && ahead.start === start ? ahead.chunk : this.readChunk(start);
    return ready.then(function (chunk) {
      if (self.state !== 'active' || gen !== self.gen) throw new Error('stopped');
      end = chunk.end;
      if (end < self.size) {
        var next = self.readChunk(end);
        next.catch(function () { /* a failed read-ahead is read again when its turn comes */ });
        self.ahead = { start: end, chunk: next };
      }
      var sum = chunk.sum;
      self.current = request('PATCH', self.url, {
        headers: {
          'Content-Type': 'application/offset+octet-stream',
          'Upload-Offset': String(start),
          'Upload-Checksum': 'sha256 ' + sum
        },
        body: self.file.slice(start, end),
        onProgress: function (loaded) { self.progress(start + Math.min(loaded, end - start)); }
      });
      return self.current;
    }).then(function (xhr) {
      try {
        self.check(xhr, [200, 204], true);
      } catch (err) {
        err.offset = start;
        throw err;
      }
      var off = Number(xhr.getResponseHeader('Upload-Offset'));
      self.offset = off >= 0 ? off : end;
      self.fileId = xhr.getResponseHeader('X-Gateway-File-Id') || self.fileId;
      self.attempt = 0; self.badChecksums = 0; self.badChecksumAt = -1; self.lockedSince = 0;
      self.progress(self.offset);
    });
  };

  Upload.prototype.run = function () {
    var self = this, gen = ++this.gen;
    this.setState('active');
    this.stats.textContent = this.bar.value + '%';
    var needHead = !!this.url;
    if (!this.url) {
      var saved = recall(this.key);
      if (saved && saved.url) { this.url = saved.url; needHead = true; }
    }
    if (this.size > cfg.maxSize) {
      this.fail('the file is larger than this link allows (' + formatSize(cfg.maxSize) + ').');
      return;
    }

    function step() {
      if (self.state !== 'active' || gen !== self.gen) return Promise.resolve(false);
      if (Date.now() / 1000 > cfg.expiresAt) throw Fatal('this upload link has expired. Ask the support team for a new one.');
      if (!self.url) return self.create().then(function () { return true; });
      if (needHead) return self.head().then(function () { needHead = false; return true; });
      if (self.offset >= self.size) return self.finish().then(function () { return false; });
      return self.sendChunk(gen).then(function () { return true; });
    }

    function loop() {
      return Promise.resolve().then(step).then(function (more) {
        if (more) return loop();
      }, function (err) {
        if (gen !== self.gen) return;
        self.current = null;
        if (self.state !== 'active') return;
        if (err.fatal) { self.fail(err.message, err.restartOnRetry); return; }
        if (err.gone) {
          // The gateway no longer knows this upload: finished already (its answer was
          // lost) if a receipt with this file's hash exists, else expired: start over.
          return self.lookup().then(function (found) {
            if (found) return self.finish();
            self.forget(); needHead = false;
            return loop();
          });
        }
        if (err.checksum) {
          // The gateway discarded that PATCH. Ask it where the upload stands (HEAD) and send
          // the chunk at that offset again, read anew from the file. Only the same offset
          // failing again and again means the data is damaged on the way.
          if (err.offset !== self.badChecksumAt) { self.badChecksumAt = err.offset; self.badChecksums = 0; }
          if (++self.badChecksums >= MAX_BAD_CHECKSUMS) {
            self.fail('the data kept arriving damaged. Check the connection and retry.');
            return;
          }
          needHead = true;
          return self.sleep(250 * self.badChecksums).then(loop);
        }
        if (err.locked) {
          // The gateway answered: another request holds this upload's write lease. A request
          // cut off by a gateway crash keeps it until it runs out (seconds); this file being
          // sent from another window keeps it for good. Neither is a failed connection.
          if (!self.lockedSince) self.lockedSince = Date.now();
          if (Date.now() - self.lockedSince > LOCK_PATIENCE_MS) {
            self.fail('this file is being uploaded from somewhere else right now (another window?). ' +
              'Close that, then press Retry.');
            return;
          }
          needHead = true;
          self.stats.textContent = self.bar.value + '% · the server is busy with this file, waiting…';
          return self.sleep((err.retryAfter || 1000) * (0.8 + Math.random() * 0.4)).then(loop);
        }
        self.attempt++;
        if (self.attempt > MAX_ATTEMPTS) {
          self.fail('the connection to the server keeps failing. Check your network and press Retry.');
          return;
        }
        needHead = !!self.url;
        return self.waitToRetry(err.retryAfter).then(loop);
      });
    }
    loop().catch(function (err) {
      if (self.state === 'active') self.fail(err && err.message ? err.message : 'unexpected error.');
    });
  };

  Upload.prototype.waitToRetry = function (retryAfter) {
    var self = this;
    var delay = retryAfter || Math.min(30000, 500 * Math.pow(2, this.attempt - 1));
    delay = delay * (0.8 + Math.random() * 0.4);
    if (!navigator.onLine) {
      this.stats.textContent = this.bar.value + '% · offline, waiting for the network…';
      this.attempt--; // waiting for the network is not a failed attempt
      return this.sleep(3600 * 1000);
    }
    this.stats.textContent = this.bar.value + '% · connection lost, retrying in ' + formatTime(delay / 1000) + '…';
    return this.sleep(delay);
  };

  /* The whole file's SHA-256 (hex), once every byte went through the hash. */
  Upload.prototype.hexDigest = function () {
    var self = this;
    return this.hashUpTo(this.size).then(function () {
      if (!self.digest) self.digest = hex(self.sha.digest());
      return self.digest;
    });
  };

  /* Is there already a receipt for exactly this file (same size and SHA-256)? */
  Upload.prototype.lookup = function () {
    var self = this;
    if (this.hashed < this.size) return Promise.resolve(false);
    return this.hexDigest().then(function (digest) {
      return request('GET', cfg.filesUrl).then(function (xhr) {
        if (xhr.status !== 200) return false;
        var files = JSON.parse(xhr.responseText).files || [];
        return files.some(function (f) {
          if (f.sha256 === digest && f.size === self.size) { self.fileId = f.file_id; return true; }
          return false;
        });
      }, function () { return false; });
    });
  };

  Upload.prototype.finish = function () {
    var self = this;
    this.stats.textContent = '100% · checking the file…';
    return this.hexDigest().then(function () {
      self.bar.value = 100;
      store(self.key, null);
      self.setState('done', 'Uploaded, adding it to the ticket…', 'wait');
      self.stats.textContent = '100%';
      self.showHash(null);
      announce(self.name + ': uploaded, adding it to the ticket');
      watchReceipt(self);
    });
  };

  Upload.prototype.showHash = function (verified) {
    var line = this.hashLine;
    line.textContent = '';
    line.appendChild(el('span', 'muted', 'SHA-256'));
    var code = el('code', null, this.digest);
    line.appendChild(code);
    if (verified === true) line.appendChild(el('span', 'badge ok', '✓ Verified by the gateway'));
    if (verified === false) line.appendChild(el('span', 'badge bad', '✗ Does not match the gateway'));
    line.hidden = false;
    this.row.dataset.sha256 = this.digest;
    if (verified != null) this.row.dataset.verified = String(verified);
  };

  /* Match this upload with its receipt; true when nothing more is to be learned. */
  Upload.prototype.applyReceipts = function (files) {
    var self = this, receipt = null;
    if (this.state !== 'done') return true;
    files.forEach(function (f) {
      if (self.fileId ? f.file_id === self.fileId : (f.sha256 === self.digest && f.size === self.size)) receipt = f;
    });
    if (!receipt) return false;
    this.fileId = receipt.file_id;
    this.row.dataset.fileId = receipt.file_id;
    this.row.dataset.status = receipt.status;
    if (receipt.sha256 !== this.digest) {
      this.showHash(false);
      this.restartOnRetry = true;
      this.setState('failed', 'Failed: the gateway received different bytes than this file holds. ' +
        'Press Retry to send it again.', 'bad');
      this.retryBtn.hidden = false;
      announce(this.name + ' failed: checksum mismatch');
      return true;
    }
    this.showHash(true);
    if (receipt.status === 'delivered') {
      var text = receipt.route === 'storage' ? 'Stored, link posted on the ticket' : 'Delivered to the ticket';
      this.setState('done', text, 'ok');
      announce(this.name + ': ' + text);
      return true;
    }
    if (receipt.status === 'quarantined') {
      this.setState('done', 'Failed: the virus scanner flagged this file, so it was not added to the ticket.', 'bad');
      this.row.classList.add('failed');
      announce(this.name + ': flagged by the virus scanner');
      return true;
    }
    if (receipt.status === 'failed') {
      this.setState('done', 'Failed: the file is safely stored, but adding it to the ticket failed. ' +
        'The support team has been told.', 'bad');
      this.row.classList.add('failed');
      return true;
    }
    return false;
  };

  /* ---------------- scheduling ---------------- */

  function schedule() {
    var active = uploads.filter(function (u) { return u.state === 'active'; }).length;
    uploads.forEach(function (u) {
      if (active < cfg.parallel && u.state === 'queued') { active++; u.run(); }
    });
  }

  var rows = document.getElementById('rows');
  var section = document.getElementById('uploads');

  function addFiles(list) {
    list.forEach(function (item) {
      var file = item.file, name = item.name || file.name;
      var dup = uploads.some(function (u) {
        return u.key === STORE_PREFIX + JSON.stringify([cfg.ticket, name, file.size, file.lastModified]) &&
          u.state !== 'canceled' && u.state !== 'failed';
      });
      if (dup) return;
      var u = new Upload(file, name);
      uploads.push(u);
      rows.appendChild(u.row);
    });
    section.hidden = !uploads.length;
    announce(list.length === 1 ? '1 file added' : list.length + ' files added');
    schedule();
  }

  function fromInput(input) {
    var list = Array.prototype.map.call(input.files, function (f) {
      var rel = f.webkitRelativePath;
      return { file: f, name: rel ? rel.split('/').join('_') : f.name };
    });
    input.value = '';
    addFiles(list);
  }

  /* Walk dropped folders (where the browser exposes them as entries). */
  function readEntry(entry, prefix) {
    return new Promise(function (resolve) {
      if (entry.isFile) {
        entry.file(function (f) { resolve([{ file: f, name: prefix + f.name }]); }, function () { resolve([]); });
      } else if (entry.isDirectory) {
        var reader = entry.createReader(), all = [];
        (function more() {
          reader.readEntries(function (batch) {
            if (!batch.length) {
              Promise.all(all.map(function (e) { return readEntry(e, prefix + entry.name + '_'); }))
                .then(function (lists) { resolve([].concat.apply([], lists)); });
              return;
            }
            all = all.concat(Array.prototype.slice.call(batch));
            more();
          }, function () { resolve([]); });
        })();
      } else resolve([]);
    });
  }

  function onDrop(ev) {
    ev.preventDefault();
    drop.classList.remove('over');
    var dt = ev.dataTransfer, items = dt.items, entries = [];
    if (items && items.length && items[0].webkitGetAsEntry) {
      for (var i = 0; i < items.length; i++) {
        var entry = items[i].kind === 'file' && items[i].webkitGetAsEntry();
        if (entry) entries.push(entry);
      }
      Promise.all(entries.map(function (e) { return readEntry(e, ''); })).then(function (lists) {
        addFiles([].concat.apply([], lists));
      });
    } else {
      addFiles(Array.prototype.map.call(dt.files, function (f) { return { file: f, name: f.name }; }));
    }
  }

  /* ---------------- upgrade the page ---------------- */

  var form = document.getElementById('picker');
  var drop = document.getElementById('drop');
  var filesInput = document.getElementById('files');
  var folderInput = document.getElementById('folder');
  var folderLabel = document.getElementById('folder-label');

  form.addEventListener('submit', function (ev) { ev.preventDefault(); });
  filesInput.removeAttribute('required');
  filesInput.addEventListener('change', function () { fromInput(filesInput); });
  if ('webkitdirectory' in folderInput) {
    folderInput.hidden = false;
    folderInput.removeAttribute('tabindex');
    folderLabel.hidden = false;
    folderInput.addEventListener('change', function () { fromInput(folderInput); });
  }
  document.getElementById('drop-title').textContent = 'Drop files or folders here';
  document.getElementById('drop-hint').textContent =
    'or choose them below. Up to ' + formatSize(cfg.maxSize) + ' per file; several at once are fine.';

  ['dragenter', 'dragover'].forEach(function (t) {
    document.addEventListener(t, function (ev) {
      ev.preventDefault();
      if (ev.dataTransfer) ev.dataTransfer.dropEffect = 'copy';
      drop.classList.add('over');
    });
  });
  document.addEventListener('dragleave', function (ev) {
    if (!ev.relatedTarget) drop.classList.remove('over');
  });
  document.addEventListener('drop', onDrop);

  var expiry = document.querySelector('[data-expiry]');
  if (expiry && cfg.expiresAt) {
    expiry.textContent = new Date(cfg.expiresAt * 1000).toLocaleString(undefined, {
      dateStyle: 'medium', timeStyle: 'short'
    });
  }

  window.addEventListener('offline', function () {
    uploads.forEach(function (u) { if (u.state === 'active') u.abortCurrent(); });
  });
  window.addEventListener('online', function () {
    uploads.forEach(function (u) { if (u.state === 'active' && u.wake) u.wake(); });
  });

  app.dataset.ready = 'true';
})();
