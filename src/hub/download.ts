// One file from a Hugging Face style hub into the cache's blobs/ folder: metadata by HEAD (like
// huggingface_hub: X-Linked-Etag / ETag / X-Repo-Commit, the redirect to the CDN not followed), then a
// resumable GET into blobs/<etag>.incomplete that continues with a Range header after a dropped
// connection, in this process or a later one. LFS files (a sha256 etag) are checked against it.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, truncate, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';
import { formatBytes } from '../common/bytes.js';
import { createLogger } from '../common/log.js';
import { ProgressBar } from '../common/progress.js';

const log = createLogger('hub');

/** The hub answered with an HTTP error, or could not be reached; `status` is null for the latter. */
export class HubHttpError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly url: string,
    readonly errorCode: string | null = null,
  ) {
    super(message);
    this.name = 'HubHttpError';
  }
}

export interface FileMetadata {
  /** The blob's name in blobs/: sha256 for LFS files, the git blob sha1 otherwise. */
  etag: string;
  /** X-Repo-Commit: the commit the revision pointed to when asked. */
  commit: string | null;
  /** Bytes, when the hub says (X-Linked-Size for LFS files, Content-Length otherwise). */
  size: number | null;
}

export interface HubRequest {
  fetchImpl: typeof fetch;
  /** Authorization and friends; fetch drops Authorization when a redirect leaves the origin. */
  headers: Record<string, string>;
}

const MAX_RELATIVE_REDIRECTS = 5;
const MAX_DOWNLOAD_ATTEMPTS = 4;
const METADATA_TIMEOUT_MS = 20_000;
/** A download that receives nothing for this long is cut and resumed. */
const STALL_TIMEOUT_MS = 60_000;

/** fetch that turns "could not connect" into a HubHttpError with status null. */
export async function hubFetch(req: HubRequest, url: string, init: RequestInit): Promise<Response> {
  try {
    return await req.fetchImpl(url, { ...init, headers: { ...req.headers, ...(init.headers as Record<string, string>) } });
  } catch (err) {
    throw new HubHttpError(`cannot reach ${new URL(url).origin} (${describeNetworkError(err)})`, null, url);
  }
}

export function describeNetworkError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: string }).code;
    return code ? `${code}: ${cause.message}` : cause.message;
  }
  return err.name === 'TimeoutError' ? 'timed out' : err.message;
}

/** HEAD without following the CDN redirect, so the hub's own headers (etag, commit) are visible. */
export async function fetchFileMetadata(req: HubRequest, url: string): Promise<FileMetadata> {
  let current = url;
  for (let hop = 0; ; hop++) {
    const res = await hubFetch(req, current, {
      method: 'HEAD',
      redirect: 'manual',
      headers: { 'Accept-Encoding': 'identity' },
      signal: AbortSignal.timeout(METADATA_TIMEOUT_MS),
    });
    const location = res.headers.get('location');
    // A relative redirect is the hub itself (a renamed repo); an absolute one is the CDN: stop there
    // (huggingface_hub's rule).
    if (res.status >= 300 && res.status < 400 && location && isRelative(location) && hop < MAX_RELATIVE_REDIRECTS) {
      current = new URL(location, current).toString();
      continue;
    }
    if (res.status >= 400) throw httpError(res, current);
    const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
    if (!etag) throw new HubHttpError(`the hub sent no ETag for ${current}; is HF_ENDPOINT a Hugging Face compatible hub?`, res.status, current);
    // A redirect's own Content-Length describes its body, not the file.
    const size = res.headers.get('x-linked-size') ?? (res.status < 300 ? res.headers.get('content-length') : null);
    return { etag, commit: res.headers.get('x-repo-commit'), size: size !== null && /^\d+$/.test(size) ? Number(size) : null };
  }
}

function isRelative(location: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:|^\/\//i.test(location);
}

/** `W/"abc"` -> `abc`: the form huggingface_hub names blobs with. */
export function normalizeEtag(raw: string | null): string | null {
  if (!raw) return null;
  const etag = raw.replace(/^W\//, '').replace(/^"|"$/g, '');
  return /^[A-Za-z0-9_.-]+$/.test(etag) ? etag : null;
}

export function httpError(res: Response, url: string): HubHttpError {
  const code = res.headers.get('x-error-code');
  const detail = res.headers.get('x-error-message');
  return new HubHttpError(`HTTP ${res.status} for ${url}${detail ? `: ${detail}` : ''}`, res.status, url, code);
}

export interface BlobDownload {
  url: string;
  blobPath: string;
  metadata: FileMetadata;
  fileName: string;
  /** Draw a progress bar on stderr (common/progress.ts: a bar on a TTY, one summary line otherwise). */
  progress: boolean;
}

/** A running download: its bar (if any), cleared before anything is logged so lines do not mix. */
interface Transfer {
  job: BlobDownload;
  bar: ProgressBar | null;
  say(level: 'info' | 'warn', message: string, fields: Record<string, unknown>): void;
}

/**
 * Downloads `url` to `blobPath` through `<blobPath>.incomplete`, resuming what an earlier attempt or
 * process left there.
 * 1. Hash the bytes already present (so the sha256 check covers the whole file).
 * 2. GET with `Range: bytes=<have>-`; 206 appends, 200 (range ignored) starts over.
 * 3. A dropped or stalled connection retries from step 2 with the bytes written so far.
 * 4. Check size and, for LFS files, sha256; a mismatch discards the partial file and starts over once.
 * 5. Rename into place, so blobs/<etag> only ever holds complete files.
 */
export async function downloadBlob(req: HubRequest, job: BlobDownload): Promise<void> {
  const partialPath = `${job.blobPath}.incomplete`;
  await mkdir(dirname(job.blobPath), { recursive: true });
  const expectSha256 = /^[0-9a-f]{64}$/.test(job.metadata.etag) ? job.metadata.etag : null;
  const bar = job.progress ? new ProgressBar({ label: '[hub]' }) : null;
  const t: Transfer = {
    job,
    bar,
    say(level, message, fields) {
      bar?.clear();
      log[level](message, { file: job.fileName, ...fields });
    },
  };
  for (let pass = 0; pass < 2; pass++) {
    const state = await hashExisting(partialPath, job.metadata.size);
    if (state.bytes > 0) t.say('info', `resuming ${job.fileName} at ${formatBytes(state.bytes)}`, { bytes: state.bytes });
    bar?.start(job.metadata.size, state.bytes);
    await fetchIntoPartial(req, t, partialPath, state);
    const sizeOk = job.metadata.size === null || state.bytes === job.metadata.size;
    const digest = state.hash.digest('hex');
    if (sizeOk && (!expectSha256 || digest === expectSha256)) {
      await rename(partialPath, job.blobPath);
      bar?.finish(`downloaded ${job.fileName} (${formatBytes(state.bytes)}) in ${bar.seconds.toFixed(1)} s`);
      return;
    }
    await rm(partialPath, { force: true });
    const why = sizeOk ? `sha256 ${digest} != ${expectSha256}` : `${state.bytes} bytes, expected ${job.metadata.size}`;
    if (pass === 1) {
      bar?.clear();
      throw new HubHttpError(`download of ${job.fileName} is corrupt (${why}); run again to retry`, null, job.url);
    }
    t.say('warn', `${job.fileName} failed its check; downloading it again from the start`, { reason: why });
  }
}

interface PartialState {
  hash: Hash;
  bytes: number;
}

async function hashExisting(partialPath: string, expectedSize: number | null): Promise<PartialState> {
  const hash = createHash('sha256');
  const size = await stat(partialPath).then(
    (s) => s.size,
    () => 0,
  );
  if (size === 0 || (expectedSize !== null && size > expectedSize)) {
    await rm(partialPath, { force: true });
    return { hash, bytes: 0 };
  }
  for await (const chunk of createReadStream(partialPath)) hash.update(chunk as Buffer);
  return { hash, bytes: size };
}

async function fetchIntoPartial(req: HubRequest, t: Transfer, partialPath: string, state: PartialState): Promise<void> {
  const { job } = t;
  for (let attempt = 1; ; attempt++) {
    if (job.metadata.size !== null && state.bytes === job.metadata.size) return;
    try {
      await fetchOnce(req, t, partialPath, state);
      return;
    } catch (err) {
      // HTTP errors (401, 404, ...) will not get better by retrying; dropped connections will.
      const retryable = !(err instanceof HubHttpError && err.status !== null && err.status < 500);
      if (!retryable || attempt >= MAX_DOWNLOAD_ATTEMPTS) {
        t.bar?.clear();
        throw err;
      }
      t.say('warn', `${job.fileName} was cut off; resuming at ${formatBytes(state.bytes)}`, {
        error: err instanceof Error ? err.message : String(err),
        bytes: state.bytes,
        attempt: attempt + 1,
        maxAttempts: MAX_DOWNLOAD_ATTEMPTS,
      });
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

async function fetchOnce(req: HubRequest, t: Transfer, partialPath: string, state: PartialState): Promise<void> {
  const { job } = t;
  const abort = new AbortController();
  let stallTimer = setTimeout(() => abort.abort(new Error('no data for 60 s')), STALL_TIMEOUT_MS);
  const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
  if (state.bytes > 0) headers.Range = `bytes=${state.bytes}-`;
  try {
    const res = await hubFetch(req, job.url, { method: 'GET', redirect: 'follow', headers, signal: abort.signal });
    if (res.status === 416) {
      // Our partial file is not a prefix the server recognises: start over.
      await resetPartial(t, partialPath, state);
      throw new HubHttpError(`range not satisfiable for ${job.fileName}`, 503, job.url);
    }
    if (!res.ok || !res.body) throw httpError(res, job.url);
    if (state.bytes > 0 && res.status === 200) {
      t.say('info', `the server ignored the Range request for ${job.fileName}; downloading it from the start`, {});
      await resetPartial(t, partialPath, state);
    } else if (res.status === 206) {
      const start = Number(/bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1] ?? NaN);
      if (start !== state.bytes) throw new HubHttpError(`the server resumed ${job.fileName} at byte ${start}, asked ${state.bytes}`, 503, job.url);
    }
    const file = await open(partialPath, 'a');
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        clearTimeout(stallTimer);
        stallTimer = setTimeout(() => abort.abort(new Error('no data for 60 s')), STALL_TIMEOUT_MS);
        await file.write(chunk);
        // Hash only what reached the file, so bytes and hash always describe the file on disk.
        state.hash.update(chunk);
        state.bytes += chunk.byteLength;
        t.bar?.advance(chunk.byteLength, job.fileName);
      }
    } finally {
      await file.close();
    }
    if (job.metadata.size !== null && state.bytes < job.metadata.size) {
      throw new HubHttpError(`connection closed at ${state.bytes} of ${job.metadata.size} bytes`, null, job.url);
    }
  } catch (err) {
    if (err instanceof HubHttpError) throw err;
    throw new HubHttpError(describeNetworkError(err), null, job.url);
  } finally {
    clearTimeout(stallTimer);
  }
}

async function resetPartial(t: Transfer, partialPath: string, state: PartialState): Promise<void> {
  await truncate(partialPath, 0).catch(() => undefined);
  state.hash = createHash('sha256');
  state.bytes = 0;
  t.bar?.start(t.job.metadata.size, 0);
}

const LOCK_REFRESH_MS = 5_000;
/** A lock file untouched this long belongs to a process that died. */
const LOCK_STALE_MS = 30_000;

/**
 * Runs `work` holding `lockPath`, so that processes sharing a cache (replicas on one volume) do not
 * write the same .incomplete file at once; like huggingface_hub's .locks/. The holder touches the file
 * while it works, so a crashed holder's lock goes stale and is taken over.
 */
export async function withFileLock<T>(lockPath: string, work: () => Promise<T>, onWait?: () => void): Promise<T> {
  await mkdir(dirname(lockPath), { recursive: true });
  let waited = false;
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.write(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(lockPath).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > LOCK_STALE_MS) {
        await rm(lockPath, { force: true });
        continue;
      }
      if (!waited) onWait?.();
      waited = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const refresh = setInterval(() => {
    const now = new Date();
    utimes(lockPath, now, now).catch(() => undefined);
  }, LOCK_REFRESH_MS);
  try {
    return await work();
  } finally {
    clearInterval(refresh);
    await rm(lockPath, { force: true });
  }
}
