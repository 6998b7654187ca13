// The @tus/server peer with @tus/s3-store, against the run's SeaweedFS bucket.
// Usage: node bench/tus_node_peer.mjs PORT BUCKET (AWS_* of the S3 server in the
// environment). Store options are the package defaults (8 MiB parts); prints
// "READY" once it listens on 127.0.0.1.
import { Server } from '@tus/server'
import { S3Store } from '@tus/s3-store'

const [port, bucket] = process.argv.slice(2)
const store = new S3Store({
  s3ClientConfig: {
    bucket,
    region: process.env.AWS_REGION || 'us-east-1',
    endpoint: process.env.AWS_ENDPOINT_URL_S3,
    forcePathStyle: true,
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
    },
  },
})
const server = new Server({ path: '/files', datastore: store })
server.listen({ host: '127.0.0.1', port: Number(port) }, () => console.log('READY'))
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0))
