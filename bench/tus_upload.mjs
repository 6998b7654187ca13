// One tus upload with tus-js-client (the same client for every tus server).
// Usage: node bench/tus_upload.mjs ENDPOINT FILE CHUNK_SIZE FILENAME
// CHUNK_SIZE is a byte count or "Infinity". Prints one JSON line:
// {"ok": true, "seconds": ..., "url": ...} or {"ok": false, "error": ...}.
import fs from 'node:fs'
import * as tus from 'tus-js-client'

const [endpoint, path, chunkArg, filename] = process.argv.slice(2)
const chunkSize = chunkArg === 'Infinity' ? Infinity : Number(chunkArg)
const started = process.hrtime.bigint()
const upload = new tus.Upload(fs.createReadStream(path), {
  endpoint,
  chunkSize,
  retryDelays: [],
  metadata: { filename },
  storeFingerprintForResuming: false,
  onSuccess() {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    console.log(JSON.stringify({ ok: true, seconds, url: upload.url }))
  },
  onError(error) {
    console.log(JSON.stringify({ ok: false, error: String(error).slice(0, 500) }))
    process.exitCode = 1
  },
})
upload.start()
