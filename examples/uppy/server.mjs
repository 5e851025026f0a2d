// A tiny static server for the example page (no dependencies).
//
//   UPLOAD_BROKER_URL  the service's base URL, written into the page  [http://127.0.0.1:5000]
//   PORT               port to listen on                               [8080]
//   HOST               address to listen on                            [127.0.0.1]
//
// It serves index.html at / (Uppy with @uppy/aws-s3), tus.html at /tus.html (Uppy with
// @uppy/tus), and the bundles under /dist/ (run `npm run build` first).

import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
const serviceUrl = (process.env.UPLOAD_BROKER_URL || 'http://127.0.0.1:5000').replace(/\/+$/, '');
const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST || '127.0.0.1';

try {
  const parsed = new URL(serviceUrl);
  if (!['http:', 'https:'].includes(parsed.protocol)) throw new Error('not http(s)');
} catch {
  console.error(`UPLOAD_BROKER_URL=${serviceUrl} is not an http(s) URL`);
  process.exit(1);
}
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`PORT=${process.env.PORT} is not a port number`);
  process.exit(1);
}

const TYPES = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The pages, by path. */
const PAGES = { '/': 'index.html', '/index.html': 'index.html', '/tus.html': 'tus.html' };

async function page(name) {
  const html = await readFile(path.join(here, name), 'utf8');
  return html.replace('__UPLOAD_BROKER_URL__', escapeHtml(serviceUrl));
}

const server = createServer(async (req, res) => {
  const send = (status, type, body) => {
    res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
    res.end(body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
  } catch {
    send(400, 'text/plain; charset=utf-8', 'bad request\n');
    return;
  }
  try {
    if (Object.hasOwn(PAGES, pathname)) {
      send(200, 'text/html; charset=utf-8', req.method === 'HEAD' ? undefined : await page(PAGES[pathname]));
      return;
    }
    if (pathname.startsWith('/dist/')) {
      const file = path.join(dist, path.normalize(pathname.slice('/dist/'.length)));
      const info = file.startsWith(dist + path.sep) ? await stat(file).catch(() => null) : null;
      if (info?.isFile()) {
        res.writeHead(200, {
          'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
          'Content-Length': info.size,
          'Cache-Control': 'no-store',
          'X-Content-Type-Options': 'nosniff',
        });
        if (req.method === 'HEAD') res.end();
        else createReadStream(file).pipe(res);
        return;
      }
    }
    send(404, 'text/plain; charset=utf-8', 'not found\n');
  } catch (err) {
    send(500, 'text/plain; charset=utf-8', 'server error\n');
    console.error(err);
  }
});

server.listen(port, host, () => {
  const { port: actual } = server.address();
  console.log(`Uppy example on http://${host}:${actual}/ using upload-broker at ${serviceUrl}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
