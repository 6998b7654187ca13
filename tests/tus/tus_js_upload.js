// Upload one file with tus-js-client (an outside tus client), resuming a previous
// upload of the same file found in the URL storage. Prints JSON lines:
// {"event":"created"|"chunk"|"success", "url", "offset", "chunks", "fileId"}.
// Usage: node tus_js_upload.js ENDPOINT FILE URL_STORAGE CHUNK_SIZE [PARALLEL]
// With PARALLEL > 1 the file goes up as that many partial uploads at once, joined
// by a final upload (the tus concatenation extension); "chunk" events then come
// from the partial uploads, and "url" is only known at "success".
'use strict'
const fs = require('fs')
const path = require('path')
const tus = require('tus-js-client')

const [endpoint, file, storage, chunkSize, parallel = '1'] = process.argv.slice(2)
const emit = (event, extra) => process.stdout.write(JSON.stringify({ event, ...extra }) + '\n')
let fileId = null
let chunks = 0
const parallelUploads = Number(parallel)

const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  chunkSize: Number(chunkSize),
  // tus-js-client sizes a file stream itself, and refuses uploadSize with parallelUploads.
  ...(parallelUploads > 1 ? { parallelUploads } : { uploadSize: fs.statSync(file).size }),
  metadata: { filename: path.basename(file), filetype: 'application/octet-stream' },
  urlStorage: new tus.FileUrlStorage(storage),
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: false,
  retryDelays: [0, 500, 1000, 2000, 4000],
  onAfterResponse (req, res) {
    const id = res.getHeader('X-Gateway-File-Id')
    if (id) fileId = id
  },
  onUploadUrlAvailable () { emit('created', { url: upload.url }) },
  onChunkComplete (size, accepted) {
    chunks += 1
    emit('chunk', { url: upload.url, offset: accepted, chunks })
  },
  onSuccess () { emit('success', { url: upload.url, fileId }) },
  onError (err) {
    process.stderr.write(String(err) + '\n')
    process.exit(1)
  }
})

upload.findPreviousUploads().then((previous) => {
  if (previous.length) {
    emit('resuming', { url: previous[0].uploadUrl })
    upload.resumeFromPreviousUpload(previous[0])
  }
  upload.start()
})
