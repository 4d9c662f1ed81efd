#!/usr/bin/env node
// Builds the chat page (web/) into dist/web/: type-checks web/ (tsc -p web/tsconfig.json), bundles
// web/src/main.ts with its npm dependencies (markdown-it, DOMPurify, highlight.js) into one minified
// app.js with esbuild, minifies app.css, copies index.html and favicon.svg, and writes a .gz next to
// each file (the server sends it to clients that accept gzip). Fails when the gzipped total exceeds
// 300 KB. Part of `npm run build`; `--no-typecheck` skips tsc.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const WEB = join(ROOT, 'web');
const OUT = join(ROOT, 'dist', 'web');
const LIMIT_GZIP_BYTES = 300 * 1024;

if (!process.argv.includes('--no-typecheck')) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', join(WEB, 'tsconfig.json')], { stdio: 'inherit', cwd: ROOT });
}

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
await esbuild.build({
  entryPoints: [join(WEB, 'src', 'main.ts')],
  outfile: join(OUT, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome111', 'firefox115', 'safari16.4'],
  minify: true,
  legalComments: 'eof',
  logLevel: 'warning',
  tsconfig: join(WEB, 'tsconfig.json'),
});
const css = await esbuild.transform(readFileSync(join(WEB, 'app.css'), 'utf8'), { loader: 'css', minify: true });
writeFileSync(join(OUT, 'app.css'), css.code);
copyFileSync(join(WEB, 'index.html'), join(OUT, 'index.html'));
copyFileSync(join(WEB, 'favicon.svg'), join(OUT, 'favicon.svg'));

let total = 0;
const sizes = [];
for (const name of ['index.html', 'app.js', 'app.css', 'favicon.svg']) {
  const raw = readFileSync(join(OUT, name));
  const gz = gzipSync(raw, { level: 9 });
  writeFileSync(join(OUT, `${name}.gz`), gz);
  total += gz.length;
  sizes.push(`${name} ${(raw.length / 1024).toFixed(1)} KB (${(gz.length / 1024).toFixed(1)} KB gzipped)`);
}
process.stdout.write(`dist/web: ${sizes.join(', ')}; ${(total / 1024).toFixed(1)} KB gzipped in all\n`);
if (total > LIMIT_GZIP_BYTES) {
  process.stderr.write(`dist/web is ${(total / 1024).toFixed(1)} KB gzipped, over the ${LIMIT_GZIP_BYTES / 1024} KB budget\n`);
  process.exit(1);
}
