/*
 * The upload page's script (an ES module, no build step, no third-party code but the
 * vendored hash-wasm): it upgrades the no-JS form into a resumable uploader.
 *
 * upload.js (this file): the rows, their buttons, the queue and the receipts.
 * tus.js: the tus transport (partial uploads in parallel, retries, stalls, resume).
 * hashing.js + hash-worker.js: SHA-256 in Web Workers (hash-wasm), plain JS as fallback.
 *
 * Settings come from data- attributes on #app (the page's CSP allows no inline script).
 * Development knobs in the page's query: ?chunk=BYTES (PATCHes of that size, each with its
 * SHA-256), ?streams=N (partial uploads per file whatever the distance, also for small
 * files), ?stall=MS (no-progress limit).
 */
import { createHashing } from './hashing.js';
import { AUTO_RTT_MS, FileUpload, MAX_STREAMS, MiB, PARALLEL_MIN, Slots, roundTrip, storageKey } from './tus.js';

const app = document.getElementById('app');
if (app && window.XMLHttpRequest && window.File && window.Promise) main();

function main() {
  document.documentElement.classList.add('js');
  const query = new URLSearchParams(location.search);
  const concurrency = Number(app.dataset.linkConcurrency) || 8;
  const explicitChunk = query.has('chunk');
  const chunk = Number(app.dataset.chunkSize) || 16 * MiB;
  const forcedStreams = Number(query.get('streams')) || 0;
  const cfg = {
    endpoint: new URL(app.dataset.tusEndpoint, location.href).href,
    filesUrl: new URL(app.dataset.filesUrl, location.href).href,
    ticket: app.dataset.ticket,
    maxSize: Number(app.dataset.maxSize),
    expiresAt: Number(app.dataset.expiresAt),
    chunk,
    parallel: Number(app.dataset.parallel) || 3,
    concurrency,
    streams: Math.max(1, Math.min(forcedStreams || MAX_STREAMS, concurrency)),
    parallelMin: forcedStreams ? 0 : PARALLEL_MIN,
    stallMs: Number(query.get('stall')) || 15000,
    ready: null
  };
  /* Partial uploads only where they pay off: measured once, before the first file starts. */
  cfg.ready = forcedStreams ? Promise.resolve(cfg.parallelMin) : roundTrip(cfg.endpoint).then((rtt) => {
    app.dataset.rtt = isFinite(rtt) ? String(Math.round(rtt)) : 'unknown';
    return rtt < AUTO_RTT_MS ? Infinity : cfg.parallelMin;
  });
  const slots = new Slots(concurrency);
  const hashing = createHashing();
  app.dataset.hashing = hashing.kind;

  /* Each range goes as one streamed PATCH, unless ?chunk= asks for checksummed chunks. */
  function patchSize() {
    return explicitChunk ? chunk : Infinity;
  }

  /* ---------------- small helpers ---------------- */

  function formatSize(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
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
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  const announcer = document.getElementById('announce');
  function announce(text) {
    announcer.textContent = '';
    setTimeout(() => { announcer.textContent = text; }, 50);
  }

  /* ---------------- receipts polling ---------------- */

  let watching = [];
  let pollTimer = null, pollDelay = 1000;

  function watchReceipt(upload) {
    if (watching.indexOf(upload) < 0) watching.push(upload);
    pollDelay = 1000;
    if (!pollTimer) pollTimer = setTimeout(poll, 0); // the gateway named the file: its receipt exists
  }

  function poll() {
    pollTimer = null;
    if (!watching.length) return;
    const xhr = new XMLHttpRequest();
    xhr.open('GET', cfg.filesUrl, true);
    xhr.setRequestHeader('Accept', 'application/json');
    const next = () => {
      if (!watching.length) return;
      pollDelay = Math.min(pollDelay * 1.3, 10000);
      pollTimer = setTimeout(poll, pollDelay);
    };
    xhr.onload = () => {
      if (xhr.status === 200) {
        let files = [];
        try { files = JSON.parse(xhr.responseText).files || []; } catch (e) { /* keep polling */ }
        watching = watching.filter((u) => !u.applyReceipts(files));
      }
      next();
    };
    xhr.onerror = next;
    xhr.send();
  }

  /* ---------------- one file: its row ---------------- */

  const uploads = [];

  class Upload {
    constructor(file, name) {
      this.file = file;
      this.name = name;
      this.size = file.size;
      this.key = storageKey(cfg.ticket, name, file);
      this.state = 'queued';
      this.samples = [];
      this.milestone = 0;
      this.notes = new Map(); // what each part is waiting for, if anything
      this.drawn = 0;
      this.drawTimer = null;
      this.restartOnRetry = false;
      this.transfer = this.newTransfer();
      this.buildRow();
    }

    newTransfer() {
      return new FileUpload(this.file, this.name, {
        endpoint: cfg.endpoint, filesUrl: cfg.filesUrl, key: this.key,
        maxSize: cfg.maxSize, expiresAt: cfg.expiresAt,
        patchSize: patchSize(), streams: cfg.streams, parallelMin: cfg.parallelMin, ready: cfg.ready,
        stallMs: cfg.stallMs, slots, hashing, formatSize,
        ui: {
          progress: () => this.progress(),
          note: (text, key) => {
            const before = this.noteText();
            if (text) this.notes.set(key, text); else this.notes.delete(key);
            if (this.noteText() !== before) this.draw(); // a change of words is shown at once
          },
          counters: (reconnects, stalls) => {
            this.row.dataset.reconnects = String(reconnects);
            this.row.dataset.stalls = String(stalls);
          },
          checking: () => { this.notes.clear(); this.stats.textContent = '100% · checking the file…'; }
        }
      });
    }

    buildRow() {
      const row = this.row = el('li', 'row');
      row.dataset.state = 'queued';
      const head = el('div', 'row-head');
      head.appendChild(el('span', 'name', this.name));
      head.appendChild(el('span', 'size muted', formatSize(this.size)));
      row.appendChild(head);
      this.bar = el('progress');
      this.bar.max = 100; this.bar.value = 0;
      this.bar.setAttribute('aria-label', 'Upload progress of ' + this.name);
      row.appendChild(this.bar);
      const foot = el('div', 'row-foot');
      this.stats = el('span', 'stats muted', 'Waiting…');
      foot.appendChild(this.stats);
      const actions = el('span', 'actions');
      const button = (label, cls, fn) => {
        const b = el('button', 'button small ' + cls, label);
        b.type = 'button';
        b.setAttribute('aria-label', label + ' ' + this.name);
        b.dataset.action = label.toLowerCase();
        b.addEventListener('click', fn);
        actions.appendChild(b);
        return b;
      };
      this.pauseBtn = button('Pause', 'secondary', () => this.pause());
      this.resumeBtn = button('Resume', 'secondary', () => this.resume());
      this.retryBtn = button('Retry', 'primary', () => this.retry());
      this.cancelBtn = button('Cancel', 'danger', () => this.cancel());
      foot.appendChild(actions);
      row.appendChild(foot);
      this.stateLine = el('p', 'state');
      this.stateLine.hidden = true;
      row.appendChild(this.stateLine);
      this.hashLine = el('p', 'hash');
      this.hashLine.hidden = true;
      row.appendChild(this.hashLine);
      this.render();
    }

    setState(state, text, tone) {
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
    }

    render() {
      const s = this.state;
      this.pauseBtn.hidden = !(s === 'queued' || s === 'active');
      this.resumeBtn.hidden = s !== 'paused';
      this.retryBtn.hidden = s !== 'failed';
      this.cancelBtn.hidden = !(s === 'queued' || s === 'active' || s === 'paused' || s === 'failed');
    }

    noteText() {
      for (const text of this.notes.values()) return text;
      return null;
    }

    /* Progress is drawn at most every 100 ms, however often the parts report. */
    progress() {
      if (this.drawTimer) return;
      const wait = 100 - (performance.now() - this.drawn);
      if (wait > 0) { this.drawTimer = setTimeout(() => { this.drawTimer = null; this.draw(); }, wait); return; }
      this.draw();
    }

    draw() {
      this.drawn = performance.now();
      if (this.state !== 'active') return;
      const sent = this.transfer.sent();
      const pct = this.size ? Math.floor((sent / this.size) * 100) : 100;
      this.bar.value = pct;
      this.row.dataset.sent = String(sent);
      const now = performance.now();
      this.samples.push([now, sent]);
      while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
      const first = this.samples[0], dt = (now - first[0]) / 1000;
      const speed = dt > 0.2 ? Math.max(0, sent - first[1]) / dt : 0;
      const parts = [pct + '%'];
      const note = this.noteText();
      if (note) {
        parts.push(note);
      } else if (speed > 0 && sent < this.size) {
        parts.push(formatSize(speed) + '/s');
        const left = formatTime((this.size - sent) / speed);
        if (left) parts.push(left + ' left');
      }
      this.stats.textContent = parts.join(' · ');
      const step = Math.floor(pct / 25) * 25;
      if (step > this.milestone && step < 100) {
        this.milestone = step;
        announce(this.name + ': ' + step + '% sent');
      }
    }

    run() {
      this.setState('active');
      this.stats.textContent = this.bar.value + '%';
      this.samples = [];
      this.notes.clear();
      this.transfer.start().then((fileId) => this.finished(fileId), (err) => {
        if (err.stopped || this.state !== 'active') return;
        this.fail(err.fatal ? err.message : 'unexpected error (' + (err.message || err) + ').', err.restartOnRetry);
      });
    }

    finished(fileId) {
      if (this.state !== 'active') return;
      this.fileId = fileId;
      this.digest = this.transfer.digest;
      this.row.dataset.hashing = this.transfer.hashKind || hashing.kind;
      this.row.dataset.parts = String(this.transfer.parts ? this.transfer.parts.length : 1);
      this.bar.value = 100;
      this.row.dataset.sent = String(this.size);
      this.setState('done', 'Uploaded, adding it to the ticket…', 'wait');
      this.stats.textContent = '100%';
      this.showHash(null);
      announce(this.name + ': uploaded, adding it to the ticket');
      watchReceipt(this);
      schedule();
    }

    pause() {
      if (this.state === 'done' || this.state === 'canceled') return;
      const refocus = document.activeElement === this.pauseBtn;
      this.transfer.stop();
      this.setState('paused', 'Paused', 'wait');
      if (refocus) this.resumeBtn.focus();
      this.stats.textContent = this.bar.value + '% · paused';
      announce(this.name + ': paused');
      schedule();
    }

    resume() {
      if (this.state !== 'paused') return;
      const refocus = document.activeElement === this.resumeBtn;
      this.setState('queued');
      if (refocus) this.pauseBtn.focus();
      this.stats.textContent = 'Waiting…';
      announce(this.name + ': resuming');
      schedule();
    }

    retry() {
      if (this.state !== 'failed') return;
      if (this.restartOnRetry) { this.transfer.cancel(); this.transfer = this.newTransfer(); }
      this.setState('queued');
      this.stats.textContent = 'Waiting…';
      schedule();
    }

    cancel() {
      this.setState('canceled', 'Canceled', 'muted');
      this.stats.textContent = '';
      this.transfer.cancel();
      announce(this.name + ': canceled');
      schedule();
    }

    fail(reason, restartOnRetry) {
      this.restartOnRetry = !!restartOnRetry;
      this.transfer.stop();
      this.setState('failed', 'Failed: ' + reason, 'bad');
      this.stats.textContent = this.bar.value + '%';
      announce(this.name + ' failed: ' + reason);
      schedule();
    }

    showHash(verified) {
      const line = this.hashLine;
      line.textContent = '';
      line.appendChild(el('span', 'muted', 'SHA-256'));
      line.appendChild(el('code', null, this.digest));
      if (verified === true) line.appendChild(el('span', 'badge ok', '✓ Verified by the gateway'));
      if (verified === false) line.appendChild(el('span', 'badge bad', '✗ Does not match the gateway'));
      line.hidden = false;
      this.row.dataset.sha256 = this.digest;
      if (verified != null) this.row.dataset.verified = String(verified);
    }

    /* Match this upload with its receipt; true when nothing more is to be learned. */
    applyReceipts(files) {
      if (this.state !== 'done') return true;
      const receipt = files.find((f) => (this.fileId ? f.file_id === this.fileId
        : (f.sha256 === this.digest && f.size === this.size)));
      if (!receipt) return false;
      this.fileId = receipt.file_id;
      this.row.dataset.fileId = receipt.file_id;
      this.row.dataset.status = receipt.status;
      if (receipt.sha256 !== this.digest) {
        this.showHash(false);
        this.restartOnRetry = true;
        this.setState('failed', 'Failed: the gateway received different bytes than this file holds. ' +
          'Press Retry to send it again.', 'bad');
        announce(this.name + ' failed: checksum mismatch');
        return true;
      }
      this.showHash(true);
      if (receipt.status === 'delivered') {
        const text = receipt.route === 'storage' ? 'Stored, link posted on the ticket' : 'Delivered to the ticket';
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
    }
  }

  /* ---------------- scheduling ---------------- */

  function schedule() {
    let active = uploads.filter((u) => u.state === 'active').length;
    uploads.forEach((u) => {
      if (active < cfg.parallel && u.state === 'queued') { active++; u.run(); }
    });
  }

  const rows = document.getElementById('rows');
  const section = document.getElementById('uploads');

  function addFiles(list) {
    list.forEach((item) => {
      const file = item.file, name = item.name || file.name;
      const key = storageKey(cfg.ticket, name, file);
      const dup = uploads.some((u) => u.key === key && u.state !== 'canceled' && u.state !== 'failed');
      if (dup) return;
      const u = new Upload(file, name);
      uploads.push(u);
      rows.appendChild(u.row);
    });
    section.hidden = !uploads.length;
    announce(list.length === 1 ? '1 file added' : list.length + ' files added');
    schedule();
  }

  function fromInput(input) {
    const list = Array.prototype.map.call(input.files, (f) => {
      const rel = f.webkitRelativePath;
      return { file: f, name: rel ? rel.split('/').join('_') : f.name };
    });
    input.value = '';
    addFiles(list);
  }

  /* Walk dropped folders (where the browser exposes them as entries). */
  function readEntry(entry, prefix) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((f) => resolve([{ file: f, name: prefix + f.name }]), () => resolve([]));
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        let all = [];
        const more = () => {
          reader.readEntries((batch) => {
            if (!batch.length) {
              Promise.all(all.map((e) => readEntry(e, prefix + entry.name + '_')))
                .then((lists) => resolve([].concat(...lists)));
              return;
            }
            all = all.concat(Array.prototype.slice.call(batch));
            more();
          }, () => resolve([]));
        };
        more();
      } else resolve([]);
    });
  }

  function onDrop(ev) {
    ev.preventDefault();
    drop.classList.remove('over');
    const dt = ev.dataTransfer, items = dt.items, entries = [];
    if (items && items.length && items[0].webkitGetAsEntry) {
      for (let i = 0; i < items.length; i++) {
        const entry = items[i].kind === 'file' && items[i].webkitGetAsEntry();
        if (entry) entries.push(entry);
      }
      Promise.all(entries.map((e) => readEntry(e, ''))).then((lists) => addFiles([].concat(...lists)));
    } else {
      addFiles(Array.prototype.map.call(dt.files, (f) => ({ file: f, name: f.name })));
    }
  }

  /* ---------------- upgrade the page ---------------- */

  const form = document.getElementById('picker');
  const drop = document.getElementById('drop');
  const filesInput = document.getElementById('files');
  const folderInput = document.getElementById('folder');
  const folderLabel = document.getElementById('folder-label');

  form.addEventListener('submit', (ev) => ev.preventDefault());
  filesInput.removeAttribute('required');
  filesInput.addEventListener('change', () => fromInput(filesInput));
  if ('webkitdirectory' in folderInput) {
    folderInput.hidden = false;
    folderInput.removeAttribute('tabindex');
    folderLabel.hidden = false;
    folderInput.addEventListener('change', () => fromInput(folderInput));
  }
  document.getElementById('drop-title').textContent = 'Drop files or folders here';
  document.getElementById('drop-hint').textContent =
    'or choose them below. Up to ' + formatSize(cfg.maxSize) + ' per file; several at once are fine.';

  ['dragenter', 'dragover'].forEach((t) => {
    document.addEventListener(t, (ev) => {
      ev.preventDefault();
      if (ev.dataTransfer) ev.dataTransfer.dropEffect = 'copy';
      drop.classList.add('over');
    });
  });
  document.addEventListener('dragleave', (ev) => {
    if (!ev.relatedTarget) drop.classList.remove('over');
  });
  document.addEventListener('drop', onDrop);

  // In a task of its own: the first date format sets up the browser's locale data, 20 to
  // 30 ms on the main thread, which with the rest of the start made one long task.
  const expiry = document.querySelector('[data-expiry]');
  if (expiry && cfg.expiresAt) {
    setTimeout(() => {
      expiry.textContent = new Date(cfg.expiresAt * 1000).toLocaleString(undefined, {
        dateStyle: 'medium', timeStyle: 'short'
      });
    }, 0);
  }

  window.addEventListener('offline', () => {
    uploads.forEach((u) => {
      if (u.state === 'active' && u.transfer.parts) u.transfer.parts.forEach((p) => { if (p.xhr) p.xhr.abort(); });
    });
  });
  window.addEventListener('online', () => {
    uploads.forEach((u) => { if (u.state === 'active') u.transfer.wakeAll(); });
  });

  app.dataset.ready = 'true';
}
