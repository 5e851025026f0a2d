// The tus project's own Node server, @tus/server with @tus/s3-store, as its README sets it
// up: tus 1.0.0 at /files/ on 127.0.0.1, each upload an S3 multipart upload. bench/tus.py
// starts it with these settings:
//
//   PORT                   the port to listen on (127.0.0.1)
//   S3_ENDPOINT            the S3 API, e.g. http://127.0.0.1:23930 (path-style requests)
//   S3_BUCKET              a bucket that exists
//   S3_REGION              the store's region ("garage" for Garage)
//   S3_ACCESS_KEY_ID       the key pair
//   S3_SECRET_ACCESS_KEY
//   PART_SIZE              the preferred S3 part size in bytes (default 8 MiB, the store's own)
import { S3Store } from '@tus/s3-store'
import { Server } from '@tus/server'

function setting(name, fallback) {
  const value = process.env[name] ?? fallback
  if (value === undefined || value === '') {
    console.error(`server.js: set ${name}`)
    process.exit(2)
  }
  return value
}

const port = Number(setting('PORT'))
const partSize = Number(setting('PART_SIZE', String(8 * 1024 * 1024)))

const datastore = new S3Store({
  partSize,
  s3ClientConfig: {
    bucket: setting('S3_BUCKET'),
    region: setting('S3_REGION'),
    endpoint: setting('S3_ENDPOINT'),
    forcePathStyle: true,
    credentials: {
      accessKeyId: setting('S3_ACCESS_KEY_ID'),
      secretAccessKey: setting('S3_SECRET_ACCESS_KEY'),
    },
  },
})

const server = new Server({
  path: '/files',
  datastore,
  // Failures show in the log the benchmark prints when a request fails.
  onResponseError(req, err) {
    console.error(`${req.method} ${req.url}:`, err)
  },
})

server.listen({ host: '127.0.0.1', port }, () => {
  console.log(`tus server on http://127.0.0.1:${port}/files/, part size ${partSize} bytes`)
})
