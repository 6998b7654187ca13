// Upload one file with tus-js-client (an outside tus client), resuming a previous
// upload of the same file found in the URL storage. Prints JSON lines:
// {"event":"created"|"chunk"|"success", "url", "offset", "fileId"}.
// Usage: node tus_js_upload.js ENDPOINT FILE URL_STORAGE CHUNK_SIZE
'use strict'
const fs = require('fs')
const path = require('path')
const tus = require('tus-js-client')

const [endpoint, file, storage, chunkSize] = process.argv.slice(2)
const emit = (event, extra) => process.stdout.write(JSON.stringify({ event, ...extra }) + '\n')
let fileId = null

const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  chunkSize: Number(chunkSize),
  uploadSize: fs.statSync(file).size,
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
  onChunkComplete (size, accepted) { emit('chunk', { url: upload.url, offset: accepted }) },
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
