// Bundles each page's entry (Uppy, its CSS and the page's code) into dist/: src/main.js
// (index.html, @uppy/aws-s3) into app.js and app.css, src/main-tus.js (tus.html, @uppy/tus)
// into tus.js and tus.css. `node build.mjs --watch` rebuilds on every change.

import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.join(here, 'dist');
const watch = process.argv.includes('--watch');

const options = {
  entryPoints: {
    app: path.join(here, 'src', 'main.js'),
    tus: path.join(here, 'src', 'main-tus.js'),
  },
  outdir,
  bundle: true,
  format: 'esm',
  target: ['es2022'],
  minify: !watch,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'info',
};

await rm(outdir, { recursive: true, force: true });
if (watch) {
  const context = await esbuild.context(options);
  await context.watch();
} else {
  await esbuild.build(options);
}
