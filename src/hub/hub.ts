// Model resolution: a local folder as is, or a Hugging Face id from the HF cache, downloading what is
// missing into the same layout huggingface_hub uses, so both tools share one cache:
//   <cache>/models--org--name/refs/<revision>            the commit the revision pointed to
//   <cache>/models--org--name/blobs/<etag>               file contents (sha256 for LFS files)
//   <cache>/models--org--name/snapshots/<commit>/<file>  relative symlinks into blobs/
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { createLogger } from '../common/log.js';
import { downloadBlob, fetchFileMetadata, hubFetch, HubHttpError, httpError, type HubRequest, withFileLock } from './download.js';

const log = createLogger('hub');

export interface ResolveOptions {
  /** Branch, tag or commit; default 'main'. */
  revision?: string;
  /** The hub cache folder; default hubCacheDir(): HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Default HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Default HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN, or the file HF_HOME/token). */
  token?: string;
  /** Progress on stderr (common/progress.ts): a bar per file on a TTY, one summary line per file otherwise. */
  progress?: boolean;
  fetchImpl?: typeof fetch;
}

/** Resolution failed in a way the user can fix; the message says how. */
export class ModelResolveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelResolveError';
  }
}

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
const API_TIMEOUT_MS = 20_000;

/** What a model needs to load and serve; weights only as safetensors (no .bin/.pth/.gguf). */
const WANTED_FILES = new Set([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'model.safetensors.index.json',
]);
const SAFETENSORS_INDEX = 'model.safetensors.index.json';

/**
 * A local folder path is returned as is (must contain config.json). An id like
 * 'internlm/internlm2_5-7b-chat' resolves from the HF cache and otherwise downloads into it from
 * HF_ENDPOINT with HF_TOKEN, resumably. Returns the snapshot dir.
 * 1. A folder that exists wins (transformers does the same).
 * 2. HF_HUB_OFFLINE=1: the cached snapshot of the revision, or an error saying what is missing.
 * 3. Online: list the revision; if the hub cannot be reached, fall back to the cached snapshot.
 * 4. Download the files the snapshot lacks, then record refs/<revision>.
 */
export async function resolveModel(idOrPath: string, options: ResolveOptions = {}): Promise<string> {
  const local = localModelFolder(idOrPath);
  if (local) return local;
  const repoId = parseRepoId(idOrPath);
  const revision = options.revision ?? 'main';
  const env = process.env;
  const cacheDir = resolve(options.cacheDir ?? hubCacheDir(env));
  const endpoint = (options.endpoint ?? env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const repoDir = join(cacheDir, repoFolderName(repoId));
  const progress = options.progress ?? false;

  if (isTruthy(env.HF_HUB_OFFLINE)) {
    const cached = await cachedSnapshot(repoDir, revision);
    if (cached.dir && !cached.missing) return cached.dir;
    throw new ModelResolveError(
      `HF_HUB_OFFLINE is set and ${repoId}@${revision} is ${cached.dir ? `incomplete in the cache (missing ${cached.missing})` : `not in the cache at ${cacheDir}`}: ` +
        'unset HF_HUB_OFFLINE to download it, or pass the path of a local model folder',
    );
  }

  const token = options.token ?? env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN ?? readTokenFile(env);
  const req: HubRequest = {
    fetchImpl: options.fetchImpl ?? fetch,
    headers: { 'User-Agent': 'webgpu-llm-server', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  };
  let listing: RepoListing;
  try {
    listing = await listRevision(req, endpoint, repoId, revision);
  } catch (err) {
    // Only an unreachable or failing hub falls back to the cache; 401/404 are the user's to fix.
    const hubDown = err instanceof HubHttpError && (err.status === null || err.status >= 500);
    if (!hubDown) throw explain(err, repoId, revision, endpoint, Boolean(token));
    const cached = await cachedSnapshot(repoDir, revision);
    if (cached.dir && !cached.missing) {
      log.warn('the hub cannot be reached; using the cached snapshot', { error: err.message, snapshot: relative(cacheDir, cached.dir) });
      return cached.dir;
    }
    throw explain(err, repoId, revision, endpoint, Boolean(token));
  }

  const snapshotDir = join(repoDir, 'snapshots', listing.commit);
  try {
    const selected = listing.files.filter(isWantedFile);
    if (!selected.includes('config.json')) {
      throw new ModelResolveError(`${repoId}@${revision} has no config.json at its top level: it is not a transformers model this server can load`);
    }
    // With an index, only the shards it names: repos often also carry a consolidated copy.
    const metadataFirst = selected.filter((f) => !f.endsWith('.safetensors'));
    await downloadFiles(req, { endpoint, repoId, commit: listing.commit, repoDir, snapshotDir, progress }, metadataFirst);
    const weights = await weightFiles(snapshotDir, selected);
    if (weights.length === 0) {
      throw new ModelResolveError(`${repoId}@${revision} has no .safetensors weights; convert the checkpoint to safetensors first`);
    }
    await downloadFiles(req, { endpoint, repoId, commit: listing.commit, repoDir, snapshotDir, progress }, weights);
  } catch (err) {
    throw explain(err, repoId, revision, endpoint, Boolean(token));
  }
  if (revision !== listing.commit) {
    const refPath = join(repoDir, 'refs', revision);
    await mkdir(dirname(refPath), { recursive: true });
    await writeFile(refPath, listing.commit);
  }
  return snapshotDir;
}

/**
 * HF_HUB_CACHE (or its old name HUGGINGFACE_HUB_CACHE), else HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub: huggingface_hub's order.
 */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (cache) return expandHome(cache);
  return join(hfHome(env), 'hub');
}

function hfHome(env: NodeJS.ProcessEnv): string {
  if (env.HF_HOME) return expandHome(env.HF_HOME);
  return join(env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'huggingface');
}

/** 'org/name' -> 'models--org--name', huggingface_hub's folder name. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`;
}

/** The token `huggingface-cli login` saved, if any. */
function readTokenFile(env: NodeJS.ProcessEnv): string | undefined {
  try {
    return readFileSync(join(hfHome(env), 'token'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}

function isTruthy(value: string | undefined): boolean {
  return value !== undefined && ['1', 'on', 'yes', 'true'].includes(value.trim().toLowerCase());
}

function localModelFolder(idOrPath: string): string | null {
  const path = expandHome(idOrPath);
  const looksLikePath = /^(\/|\.{1,2}(\/|$)|~)/.test(idOrPath) || idOrPath.split('/').length > 2;
  if (!existsSync(path)) {
    if (looksLikePath) throw new ModelResolveError(`model folder ${path} does not exist; pass an existing folder or a Hugging Face id like org/name`);
    return null;
  }
  if (!statSync(path).isDirectory()) {
    throw new ModelResolveError(`${path} is a file; pass the model folder that holds config.json and the .safetensors weights`);
  }
  if (!existsSync(join(path, 'config.json'))) {
    throw new ModelResolveError(`model folder ${resolve(path)} has no config.json; pass the folder that holds config.json and the .safetensors weights`);
  }
  return resolve(path);
}

function parseRepoId(id: string): string {
  if (!/^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/.test(id) || id.includes('--') || id.endsWith('.')) {
    throw new ModelResolveError(`"${id}" is neither an existing folder nor a Hugging Face model id like org/name`);
  }
  return id;
}

function isWantedFile(name: string): boolean {
  // Top level only: subfolders hold other formats (original/, onnx/) that would double the download.
  if (name.includes('/')) return false;
  return WANTED_FILES.has(name) || name.endsWith('.safetensors');
}

interface RepoListing {
  commit: string;
  files: string[];
}

async function listRevision(req: HubRequest, endpoint: string, repoId: string, revision: string): Promise<RepoListing> {
  const url = `${endpoint}/api/models/${repoId}/revision/${encodeURIComponent(revision)}`;
  const res = await hubFetch(req, url, { signal: AbortSignal.timeout(API_TIMEOUT_MS) });
  if (!res.ok) throw httpError(res, url);
  const body = (await res.json().catch(() => null)) as { sha?: unknown; siblings?: Array<{ rfilename?: unknown }> } | null;
  const files = (body?.siblings ?? []).map((s) => s.rfilename).filter((f): f is string => typeof f === 'string');
  if (!body || !Array.isArray(body.siblings)) {
    throw new ModelResolveError(`${url} did not answer with a model listing; is HF_ENDPOINT (${endpoint}) a Hugging Face compatible hub?`);
  }
  let commit = typeof body.sha === 'string' ? body.sha : null;
  if (!commit) {
    // Some mirrors leave sha out of the listing; the file endpoint still says X-Repo-Commit.
    commit = (await fetchFileMetadata(req, fileUrl(endpoint, repoId, revision, 'config.json'))).commit;
  }
  if (!commit || !/^[0-9a-f]{40}$/.test(commit)) {
    throw new ModelResolveError(`cannot tell which commit ${repoId}@${revision} is at ${endpoint} (got ${JSON.stringify(commit)})`);
  }
  return { commit, files };
}

function fileUrl(endpoint: string, repoId: string, revision: string, file: string): string {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${path}`;
}

interface SnapshotTarget {
  endpoint: string;
  repoId: string;
  commit: string;
  repoDir: string;
  snapshotDir: string;
  progress: boolean;
}

/** Each file: skip if the snapshot has it (a commit's files never change), else blob + symlink. */
async function downloadFiles(req: HubRequest, target: SnapshotTarget, files: readonly string[]): Promise<void> {
  for (const file of files) {
    const linkPath = join(target.snapshotDir, file);
    if (await exists(linkPath)) continue;
    const url = fileUrl(target.endpoint, target.repoId, target.commit, file);
    const metadata = await fetchFileMetadata(req, url);
    const blobPath = join(target.repoDir, 'blobs', metadata.etag);
    if (!(await exists(blobPath))) {
      const lockPath = join(dirname(target.repoDir), '.locks', basename(target.repoDir), `${metadata.etag}.lock`);
      await withFileLock(
        lockPath,
        async () => {
          // Another process may have finished it while we waited.
          if (!(await exists(blobPath))) await downloadBlob(req, { url, blobPath, metadata, fileName: file, progress: target.progress });
        },
        () => log.info(`waiting for another process downloading ${file}`, { file, lock: lockPath }),
      );
    }
    await mkdir(dirname(linkPath), { recursive: true });
    await rm(linkPath, { force: true }); // a dangling link from a deleted blob
    await symlink(relative(dirname(linkPath), blobPath), linkPath);
  }
}

/** The shards the index names, or every top-level .safetensors file when there is no index. */
async function weightFiles(snapshotDir: string, selected: readonly string[]): Promise<string[]> {
  const all = selected.filter((f) => f.endsWith('.safetensors'));
  if (!selected.includes(SAFETENSORS_INDEX)) return all;
  const shards = await indexShards(join(snapshotDir, SAFETENSORS_INDEX));
  const missing = shards.filter((s) => !all.includes(s));
  if (missing.length > 0) throw new ModelResolveError(`${SAFETENSORS_INDEX} names shards the repo does not have: ${missing.join(', ')}`);
  return shards;
}

async function indexShards(indexPath: string): Promise<string[]> {
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map?: Record<string, string> };
  if (!index.weight_map) throw new ModelResolveError(`${indexPath} has no weight_map`);
  return [...new Set(Object.values(index.weight_map))].sort();
}

/** The snapshot a revision points to in the cache, and the first file it lacks (null if none). */
async function cachedSnapshot(repoDir: string, revision: string): Promise<{ dir: string | null; missing: string | null }> {
  let commit: string | null = /^[0-9a-f]{40}$/.test(revision) ? revision : null;
  if (!commit)
    commit = await readFile(join(repoDir, 'refs', revision), 'utf8').then(
      (s) => s.trim(),
      () => null,
    );
  if (!commit) return { dir: null, missing: null };
  const dir = join(repoDir, 'snapshots', commit);
  if (!(await exists(dir))) return { dir: null, missing: null };
  if (!(await exists(join(dir, 'config.json')))) return { dir, missing: 'config.json' };
  if (await exists(join(dir, SAFETENSORS_INDEX))) {
    for (const shard of await indexShards(join(dir, SAFETENSORS_INDEX))) {
      if (!(await exists(join(dir, shard)))) return { dir, missing: shard };
    }
    return { dir, missing: null };
  }
  const hasWeights = (await readdir(dir)).some((f) => f.endsWith('.safetensors'));
  return { dir, missing: hasWeights ? null : '*.safetensors' };
}

/** True for a file, or a symlink whose blob is still there. */
async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Turns hub errors into messages that say what to do. */
function explain(err: unknown, repoId: string, revision: string, endpoint: string, hasToken: boolean): Error {
  if (!(err instanceof HubHttpError)) return err instanceof Error ? err : new Error(String(err));
  if (err.status === null) {
    return new ModelResolveError(
      `cannot download ${repoId}: ${err.message}. Check the network (or point HF_ENDPOINT at a reachable mirror); ` +
        'set HF_HUB_OFFLINE=1 to use only the local cache, or pass the path of a local model folder',
    );
  }
  if (err.errorCode === 'RevisionNotFound') {
    return new ModelResolveError(`revision ${revision} of ${repoId} not found at ${endpoint} (check --revision)`);
  }
  // The hub answers 401 for a repo that does not exist, so as not to reveal private ones.
  if ((err.status === 404 && err.errorCode !== 'EntryNotFound') || err.errorCode === 'RepoNotFound') {
    return new ModelResolveError(
      `model ${repoId} not found at ${endpoint} (check the id and --revision)` +
        (err.status === 401 && !hasToken ? '; if it is private or gated, set HF_TOKEN' : ''),
    );
  }
  if (err.status === 401 || err.status === 403) {
    return new ModelResolveError(
      `${endpoint} refused access to ${repoId} (HTTP ${err.status}): ` +
        (hasToken
          ? 'set HF_TOKEN to a token that can read this repo (for gated models, accept the license on the model page first)'
          : 'set HF_TOKEN to a Hugging Face access token (for gated models, accept the license on the model page first)'),
    );
  }
  return new ModelResolveError(`cannot download ${repoId}@${revision} from ${endpoint}: ${err.message}`);
}
