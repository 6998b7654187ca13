/*
 * The page's hashing, off the main thread: SHA-256 with hash-wasm's WebAssembly build
 * (vendor/hash-wasm, pinned, MIT), or the plain-JavaScript SHA-256 where WebAssembly
 * is missing. The worker reads the file itself (a File crosses into a worker without a
 * copy of its bytes), so the page's main thread never holds file data.
 *
 * Messages in:  {id, op: 'range', file, start, end}  -> {id, sum (base64), kind}
 *               {id, op: 'whole', file}              -> {id, hashed} ..., {id, hex, kind}
 *               {id, op: 'stop'}                      stops a 'whole' job
 * Errors come back as {id, error}.
 */
import './vendor/hash-wasm/sha256.umd.min.js';
import { base64, hashRange, hex, jsHasher } from './sha256.js';

const STEP = 8 * 1024 * 1024; // bytes read and hashed at a time
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

self.onmessage = async (ev) => {
  const m = ev.data;
  if (m.op === 'stop') { stopped.add(m.id); return; }
  let h = null;
  try {
    h = await hasher();
    if (m.op === 'range') {
      const digest = await hashRange(h, m.file, m.start, m.end, STEP);
      self.postMessage({ id: m.id, sum: base64(digest), kind: h.kind });
    } else if (m.op === 'whole') {
      const digest = await hashRange(h, m.file, 0, m.file.size, STEP, (at) => {
        if (stopped.has(m.id)) return false;
        self.postMessage({ id: m.id, hashed: at });
        return true;
      });
      self.postMessage({ id: m.id, hex: hex(digest), kind: h.kind });
    }
    h.done();
  } catch (e) {
    self.postMessage({ id: m.id, error: String((e && e.message) || e) });
  } finally {
    stopped.delete(m.id);
  }
};
