/*
 * The page's hashing, off the main thread: SHA-256 with hash-wasm's WebAssembly build
 * (vendor/hash-wasm, pinned, MIT), or the plain-JavaScript SHA-256 where WebAssembly
 * is missing. The worker reads the file itself (a File crosses into a worker without a
 * copy of its bytes), so the page's main thread never holds file data.
 *
 * A chunk's checksum is one digest of one range, which the browser's native SHA-256
 * (crypto.subtle, in secure contexts) takes two to three times faster than WebAssembly on
 * the same machine; the whole file's digest must be incremental, which crypto.subtle
 * cannot do, so it is hash-wasm's.
 *
 * Messages in:  {id, op: 'range', file, start, end}  -> {id, sum (base64), kind}
 *               {id, op: 'whole', file}              -> {id, hashed} ..., {id, hex, kind}
 *               {id, op: 'stop'}                      stops a 'whole' job
 * Errors come back as {id, error}.
 */
import './vendor/hash-wasm/sha256.umd.min.js';
import { base64, hashRange, hex, jsHasher } from './sha256.js';

const STEP = 8 * 1024 * 1024; // bytes read and hashed at a time
const NATIVE_MAX = 64 * 1024 * 1024; // a range up to this size is read whole for crypto.subtle
const subtle = self.crypto && self.crypto.subtle;
const stopped = new Set();
const pool = []; // idle hash-wasm instances, reused after init()
let wasm = typeof WebAssembly === 'object' && !!(self.hashwasm && self.hashwasm.createSHA256);

async function hasher() {
  if (wasm) {
    try {
      const h = pool.pop() || await self.hashwasm.createSHA256();
      h.init();
      return {
        update: (bytes) => { h.update(bytes); },
        digest: () => h.digest('binary'),
        done: () => { if (pool.length < 4) pool.push(h); },
        kind: 'wasm'
      };
    } catch (e) {
      wasm = false; // e.g. WebAssembly compilation refused: plain JavaScript from now on
    }
  }
  return { ...jsHasher(), done: () => {} };
}

/* A BYOB reader of the file's bytes, or null where Blob streams are not byte streams. */
function byteReader(file) {
  try {
    return file.stream().getReader({ mode: 'byob' });
  } catch (e) {
    return null;
  }
}

/*
 * The whole file through one stream, read into one reused buffer: a slice per step would
 * allocate (and zero) a fresh ArrayBuffer for every 8 MiB and cost the browser process a
 * blob read each; on 1 GiB this took 0.8 CPU-seconds less in the worker and 0.4 less
 * in the browser process, leaving the SHA-256 itself as nearly all of the work.
 */
async function hashStream(h, reader, size, onStep) {
  let buffer = new ArrayBuffer(STEP);
  let at = 0, told = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read(new Uint8Array(buffer, 0, STEP));
      if (done) break;
      h.update(value);
      at += value.byteLength;
      buffer = value.buffer;
      if (at - told >= STEP || at === size) {
        told = at;
        if (onStep(at) === false) throw new Error('stopped');
      }
    }
  } catch (e) {
    reader.cancel().catch(() => { /* already errored */ });
    throw e;
  }
  if (at !== size) throw new Error('the file changed while it was read');
  return h.digest();
}

self.onmessage = async (ev) => {
  const m = ev.data;
  if (m.op === 'stop') { stopped.add(m.id); return; }
  let h = null;
  try {
    if (m.op === 'range' && subtle && m.end - m.start <= NATIVE_MAX) {
      const buf = await m.file.slice(m.start, m.end).arrayBuffer();
      if (buf.byteLength !== m.end - m.start) throw new Error('the file changed while it was read');
      const digest = new Uint8Array(await subtle.digest('SHA-256', buf));
      self.postMessage({ id: m.id, sum: base64(digest), kind: 'native' });
      return;
    }
    h = await hasher();
    if (m.op === 'range') {
      const digest = await hashRange(h, m.file, m.start, m.end, STEP);
      self.postMessage({ id: m.id, sum: base64(digest), kind: h.kind });
    } else if (m.op === 'whole') {
      const onStep = (at) => {
        if (stopped.has(m.id)) return false;
        self.postMessage({ id: m.id, hashed: at });
        return true;
      };
      const reader = byteReader(m.file);
      const digest = await (reader ? hashStream(h, reader, m.file.size, onStep)
        : hashRange(h, m.file, 0, m.file.size, STEP, onStep));
      self.postMessage({ id: m.id, hex: hex(digest), kind: h.kind });
    }
    h.done();
  } catch (e) {
    self.postMessage({ id: m.id, error: String((e && e.message) || e) });
  } finally {
    stopped.delete(m.id);
  }
};
