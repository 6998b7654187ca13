/*
 * The page's SHA-256 work: per-chunk checksums (tus checksum extension) and the whole
 * file's digest (checked against the receipt).
 *
 * Where the browser has Web Workers, two module workers (hash-worker.js) do it: one
 * streams the whole file once, the other takes each chunk's checksum just before its
 * PATCH, so neither waits for the other; both use hash-wasm's WebAssembly SHA-256. Where
 * workers are missing (or the worker cannot start), the plain-JavaScript SHA-256 runs on
 * the main thread in small steps, yielding between them so the page stays responsive.
 */
import { base64, hashRange, hex, jsHasher } from './sha256.js';

const MAIN_STEP = 512 * 1024; // plain JS on the main thread: a few ms per step

function yieldToPage() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

class MainThreadHashing {
  constructor() {
    this.kind = 'main-js';
  }

  checksum(file, start, end) {
    return hashRange(jsHasher(), file, start, end, MAIN_STEP, null, yieldToPage).then(base64);
  }

  whole(file, onProgress) {
    let stop = false;
    const promise = hashRange(jsHasher(), file, 0, file.size, MAIN_STEP, (at) => {
      if (stop) return false;
      if (onProgress) onProgress(at);
      return true;
    }, yieldToPage).then((d) => ({ hex: hex(d), kind: 'main-js' }));
    return { promise, stop: () => { stop = true; } };
  }
}

class WorkerHashing {
  constructor(fallback) {
    this.fallback = fallback;
    this.kind = 'worker';
    this.jobs = new Map();
    this.nextId = 1;
    this.broken = false;
    const url = new URL('./hash-worker.js', import.meta.url);
    this.wholeWorker = this.start(url);
    this.chunkWorker = this.start(url);
  }

  start(url) {
    const worker = new Worker(url, { type: 'module', name: 'sha256' });
    worker.onmessage = (ev) => this.receive(ev.data);
    worker.onerror = (ev) => {
      // The worker could not load (no module workers, blocked, ...): plain JS from now on.
      if (ev && ev.preventDefault) ev.preventDefault();
      this.fail();
    };
    return worker;
  }

  fail() {
    if (this.broken) return;
    this.broken = true;
    this.kind = this.fallback.kind;
    const jobs = [...this.jobs.values()];
    this.jobs.clear();
    for (const w of [this.wholeWorker, this.chunkWorker]) w.terminate();
    for (const job of jobs) job.redo();
  }

  receive(m) {
    const job = this.jobs.get(m.id);
    if (!job) return;
    if (m.hashed !== undefined) { if (job.onProgress) job.onProgress(m.hashed); return; }
    this.jobs.delete(m.id);
    if (m.error) job.reject(new Error(m.error));
    else job.resolve(m);
  }

  call(worker, message, onProgress, redo) {
    if (this.broken) return redo();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.jobs.set(id, {
        resolve, reject, onProgress,
        redo: () => redo().then(resolve, reject)
      });
      worker.postMessage({ id, ...message });
    });
  }

  checksum(file, start, end) {
    return this.call(this.chunkWorker, { op: 'range', file, start, end }, null,
      () => this.fallback.checksum(file, start, end).then((sum) => ({ sum }))).then((m) => m.sum);
  }

  whole(file, onProgress) {
    let id = this.nextId; // the id call() is about to take
    let inner = null;
    const promise = this.call(this.wholeWorker, { op: 'whole', file }, onProgress, () => {
      inner = this.fallback.whole(file, onProgress);
      return inner.promise;
    }).then((m) => ({ hex: m.hex, kind: m.kind === 'wasm' ? 'worker-wasm' : (m.kind === 'js' ? 'worker-js' : m.kind) }));
    return {
      promise,
      stop: () => {
        if (inner) inner.stop();
        else if (!this.broken) this.wholeWorker.postMessage({ id, op: 'stop' });
        id = -1;
      }
    };
  }
}

/* Workers with WebAssembly where the browser has workers; plain JS on the main thread otherwise. */
export function createHashing() {
  const fallback = new MainThreadHashing();
  if (typeof Worker !== 'function') return fallback;
  try {
    return new WorkerHashing(fallback);
  } catch (e) {
    return fallback;
  }
}
