// resolveModel against a loopback stand-in for the Hugging Face hub: the cache layout huggingface_hub
// writes, cache reuse with the hub gone, resumed downloads (Range) that end byte-identical, the token,
// error messages, local folders, and which env variable picks the cache.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, lstatSync, readFileSync, readlinkSync, readdirSync, mkdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { hubCacheDir, repoFolderName, resolveModel } from '../../src/hub/hub.js';

interface FakeFile {
  name: string;
  data: Buffer;
  /** LFS files redirect to a CDN path and are named by sha256, like on the real hub. */
  lfs: boolean;
}

interface FakeRepo {
  id: string;
  commit: string;
  files: FakeFile[];
  /** Needs `Authorization: Bearer <token>`. */
  token?: string;
  /** Branches and tags besides main. */
  refs?: Record<string, string>;
}

interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) =>
  createHash('sha1')
    .update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b]))
    .digest('hex');
const hexCommit = () => randomBytes(20).toString('hex');

/** Just enough of the hub's HTTP API: the revision listing, HEAD/GET on resolve/, a CDN with Range. */
class FakeHub {
  readonly seen: SeenRequest[] = [];
  /** First GET of a path: send this many body bytes, then drop the connection. */
  readonly cutAfterBytes = new Map<string, number>();
  /** The real hub answers 401 for an unknown repo when no token is sent, so as not to reveal private ones. */
  unknownRepoStatus = 404;
  private server: Server | null = null;
  endpoint = '';

  constructor(readonly repos: FakeRepo[]) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.endpoint = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
    return this.endpoint;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = null;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.endpoint);
    this.seen.push({ method: req.method ?? '', url: url.pathname, headers: req.headers });
    const path = decodeURIComponent(url.pathname);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(path);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
    if (api) {
      this.listing(req, res, api[1]!, api[2]!);
    } else if (resolve) {
      this.resolveFile(req, res, resolve[1]!, resolve[2]!, resolve[3]!);
    } else if (cdn) {
      const file = this.repos.flatMap((r) => r.files).find((f) => sha256(f.data) === cdn[1]);
      if (file) this.sendBody(req, res, file.data, url.pathname, {});
      else this.fail(res, 404, 'EntryNotFound');
    } else {
      this.fail(res, 404, null);
    }
  }

  /** The repo and commit, or null after answering with the hub's error. */
  private lookup(req: IncomingMessage, res: ServerResponse, id: string, revision: string): { repo: FakeRepo; commit: string } | null {
    const repo = this.repos.find((r) => r.id === id);
    if (!repo) return this.failed(res, this.unknownRepoStatus, 'RepoNotFound');
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) return this.failed(res, 401, 'GatedRepo');
    const commit = revision === 'main' ? repo.commit : revision === repo.commit ? repo.commit : repo.refs?.[revision];
    if (!commit) return this.failed(res, 404, 'RevisionNotFound');
    return { repo, commit };
  }

  private listing(req: IncomingMessage, res: ServerResponse, id: string, revision: string): void {
    const found = this.lookup(req, res, id, revision);
    if (!found) return;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ id, sha: found.commit, siblings: found.repo.files.map((f) => ({ rfilename: f.name })) }));
  }

  private resolveFile(req: IncomingMessage, res: ServerResponse, id: string, revision: string, name: string): void {
    const found = this.lookup(req, res, id, revision);
    if (!found) return;
    const file = found.repo.files.find((f) => f.name === name);
    if (!file) {
      this.fail(res, 404, 'EntryNotFound');
      return;
    }
    if (file.lfs) {
      res.writeHead(302, {
        Location: `${this.endpoint}/cdn/${sha256(file.data)}`,
        'X-Linked-Etag': `"${sha256(file.data)}"`,
        'X-Linked-Size': String(file.data.length),
        'X-Repo-Commit': found.commit,
        'Content-Length': '0',
      });
      res.end();
      return;
    }
    this.sendBody(req, res, file.data, `/${id}/resolve/${revision}/${name}`, { ETag: `W/"${gitSha1(file.data)}"`, 'X-Repo-Commit': found.commit });
  }

  private sendBody(req: IncomingMessage, res: ServerResponse, data: Buffer, key: string, headers: Record<string, string>): void {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (start > data.length) {
      this.fail(res, 416, null);
      return;
    }
    const body = data.subarray(start);
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'Content-Length': String(body.length),
      'Accept-Ranges': 'bytes',
      ...(range ? { 'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const cut = this.cutAfterBytes.get(key);
    if (cut !== undefined) {
      this.cutAfterBytes.delete(key);
      // Drop the connection a moment after the bytes went out, so the client has consumed them (a
      // stream destroyed with an error discards what its reader had not taken yet).
      res.write(body.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 300));
      return;
    }
    res.end(body);
  }

  /** fail(), for lookups that answer null once they have answered the request. */
  private failed(res: ServerResponse, status: number, errorCode: string | null): null {
    this.fail(res, status, errorCode);
    return null;
  }

  private fail(res: ServerResponse, status: number, errorCode: string | null): void {
    res.writeHead(status, errorCode ? { 'X-Error-Code': errorCode, 'X-Error-Message': `${errorCode} (fake hub)` } : {});
    res.end(JSON.stringify({ error: errorCode ?? 'not found' }));
  }
}

// --- a tiny fake model repo: small files, but the weights large enough to cut mid-way ------------
const weights = randomBytes(300_000);
const tinyRepo: FakeRepo = {
  id: 'test-org/tiny-model',
  commit: hexCommit(),
  files: [
    { name: 'config.json', data: Buffer.from('{"model_type":"llama","hidden_size":8}'), lfs: false },
    { name: 'generation_config.json', data: Buffer.from('{"eos_token_id":2}'), lfs: false },
    { name: 'tokenizer.json', data: Buffer.from('{"model":{"type":"BPE"}}'), lfs: false },
    { name: 'tokenizer_config.json', data: Buffer.from('{"bos_token":"<s>"}'), lfs: false },
    { name: 'model.safetensors', data: weights, lfs: true },
    { name: 'pytorch_model.bin', data: randomBytes(1000), lfs: true },
    { name: 'model.gguf', data: randomBytes(1000), lfs: true },
    { name: 'README.md', data: Buffer.from('# tiny'), lfs: false },
    { name: 'original/consolidated.safetensors', data: randomBytes(500), lfs: true },
  ],
};
tinyRepo.refs = { v1: tinyRepo.commit };

const shardA = randomBytes(2000),
  shardB = randomBytes(3000);
const shardedRepo: FakeRepo = {
  id: 'test-org/sharded',
  commit: hexCommit(),
  files: [
    { name: 'config.json', data: Buffer.from('{"model_type":"llama"}'), lfs: false },
    {
      name: 'model.safetensors.index.json',
      data: Buffer.from(JSON.stringify({ weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' } })),
      lfs: false,
    },
    { name: 'model-00001-of-00002.safetensors', data: shardA, lfs: true },
    { name: 'model-00002-of-00002.safetensors', data: shardB, lfs: true },
    // A second copy of the weights in one file, as Mistral repos carry; not in the index.
    { name: 'consolidated.safetensors', data: randomBytes(5000), lfs: true },
  ],
};

const privateRepo: FakeRepo = {
  id: 'test-org/gated',
  commit: hexCommit(),
  token: 'hf_test_secret',
  files: [
    { name: 'config.json', data: Buffer.from('{}'), lfs: false },
    { name: 'model.safetensors', data: randomBytes(100), lfs: true },
  ],
};

const HF_VARS = ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'HF_ENDPOINT', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'XDG_CACHE_HOME'];
const savedEnv = Object.fromEntries(HF_VARS.map((k) => [k, process.env[k]]));
const scratch = mkdtempSync(join(tmpdir(), 'hub-test-'));
let hub: FakeHub;
let caseNo = 0;
const freshCache = () => join(scratch, `cache-${++caseNo}`);

test.before.each(async () => {
  // Hermetic: nothing from the developer's own HF setup leaks in (HF_HOME could hold a token file).
  for (const k of HF_VARS) delete process.env[k];
  process.env.HF_HOME = join(scratch, 'no-hf-home');
  hub = new FakeHub([tinyRepo, shardedRepo, privateRepo]);
  await hub.start();
});
test.after.each(async () => {
  await hub.stop();
});
test.after(() => {
  for (const k of HF_VARS) savedEnv[k] === undefined ? delete process.env[k] : (process.env[k] = savedEnv[k]);
  rmSync(scratch, { recursive: true, force: true });
});

const fileOf = (repo: FakeRepo, name: string) => repo.files.find((f) => f.name === name)!.data;

test('downloads into the huggingface_hub cache layout: refs, blobs by etag, snapshot symlinks', async () => {
  const cacheDir = freshCache();
  const dir = await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint });
  const repoDir = join(cacheDir, 'models--test-org--tiny-model');
  assert.is(dir, join(repoDir, 'snapshots', tinyRepo.commit));
  assert.is(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), tinyRepo.commit);
  const want = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
  assert.equal(readdirSync(dir).sort(), want);
  for (const name of want) {
    const link = join(dir, name);
    assert.ok(lstatSync(link).isSymbolicLink(), `${name} is a symlink`);
    const data = fileOf(tinyRepo, name);
    const etag = name === 'model.safetensors' ? sha256(data) : gitSha1(data);
    assert.is(readlinkSync(link), join('..', '..', 'blobs', etag), `${name} links to its blob by relative path`);
    assert.ok(readFileSync(link).equals(data), `${name} content`);
  }
  assert.not.ok(readdirSync(join(repoDir, 'blobs')).some((f) => f.endsWith('.incomplete')));
  const fetched = hub.seen.filter((r) => r.method === 'GET').map((r) => r.url);
  assert.not.ok(
    fetched.some((u) => /\.bin|\.gguf|README|original/.test(u)),
    `skips other formats: ${fetched.join(' ')}`,
  );
});

test('a second resolve uses the cache: no downloads while up, and works with the hub stopped', async () => {
  const cacheDir = freshCache();
  const first = await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint });
  const numBodyGets = hub.seen.filter((r) => r.method === 'GET' && !r.url.startsWith('/api/')).length;
  assert.ok(numBodyGets > 0);
  assert.is(await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint }), first);
  assert.is(hub.seen.filter((r) => r.method === 'GET' && !r.url.startsWith('/api/')).length, numBodyGets, 'nothing downloaded twice');
  await hub.stop();
  assert.is(await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint }), first, 'hub unreachable: cached snapshot');
  process.env.HF_HUB_OFFLINE = '1';
  assert.is(await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint }), first, 'HF_HUB_OFFLINE: cache only');
});

test('HF_HUB_OFFLINE=1 never touches the network and says what is missing', async () => {
  process.env.HF_HUB_OFFLINE = '1';
  const cacheDir = freshCache();
  try {
    await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint });
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /HF_HUB_OFFLINE/);
    assert.match((err as Error).message, /not in the cache/);
  }
  assert.is(hub.seen.length, 0);
  // A half-downloaded snapshot (weights missing) is not served offline either.
  delete process.env.HF_HUB_OFFLINE;
  const dir = await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint });
  rmSync(join(dir, 'model.safetensors'));
  process.env.HF_HUB_OFFLINE = 'true';
  try {
    await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint });
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /incomplete in the cache \(missing \*\.safetensors\)/);
  }
});

test('a connection dropped mid-file resumes with a Range request; the file is byte-identical', async () => {
  const cacheDir = freshCache();
  const cdnPath = `/cdn/${sha256(weights)}`;
  hub.cutAfterBytes.set(cdnPath, 123_457);
  const dir = await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint });
  const gets = hub.seen.filter((r) => r.method === 'GET' && r.url === cdnPath);
  assert.is(gets.length, 2, 'one cut GET, one resumed GET');
  assert.is(gets[0]!.headers.range, undefined);
  // It resumes where the file on disk ends: every byte that arrived, unless the cut came while the
  // client was still writing a chunk out (it then resumes at a chunk boundary before the cut).
  const resumedAt = Number(/^bytes=(\d+)-$/.exec(String(gets[1]!.headers.range))?.[1]);
  assert.ok(resumedAt > 0 && resumedAt <= 123_457, `resumed with Range ${gets[1]!.headers.range}`);
  assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(weights), 'byte-identical');
});

test('a partial file left by an earlier process resumes; a corrupt one is detected and re-downloaded', async () => {
  const cacheDir = freshCache();
  const blobs = join(cacheDir, repoFolderName(tinyRepo.id), 'blobs');
  mkdirSync(blobs, { recursive: true });
  const partial = join(blobs, `${sha256(weights)}.incomplete`);
  writeFileSync(partial, weights.subarray(0, 50_000));
  const dir = await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint });
  const cdnPath = `/cdn/${sha256(weights)}`;
  assert.equal(
    hub.seen.filter((r) => r.url === cdnPath).map((r) => r.headers.range),
    ['bytes=50000-'],
  );
  assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(weights));

  // Same again with garbage as the partial file: the sha256 check catches it, one full GET fixes it.
  const cacheDir2 = freshCache();
  const blobs2 = join(cacheDir2, repoFolderName(tinyRepo.id), 'blobs');
  mkdirSync(blobs2, { recursive: true });
  writeFileSync(join(blobs2, `${sha256(weights)}.incomplete`), randomBytes(50_000));
  hub.seen.length = 0;
  const dir2 = await resolveModel(tinyRepo.id, { cacheDir: cacheDir2, endpoint: hub.endpoint });
  assert.equal(
    hub.seen.filter((r) => r.url === cdnPath).map((r) => r.headers.range),
    ['bytes=50000-', undefined],
  );
  assert.ok(readFileSync(join(dir2, 'model.safetensors')).equals(weights));
});

test('two resolves sharing a cache (replicas on one volume) download each file once, intact', async () => {
  const cacheDir = freshCache();
  const cdnPath = `/cdn/${sha256(weights)}`;
  const [a, b] = await Promise.all([
    resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint }),
    resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint }),
  ]);
  assert.is(a, b);
  assert.is(hub.seen.filter((r) => r.method === 'GET' && r.url === cdnPath).length, 1, 'the second waited for the first');
  assert.ok(readFileSync(join(a, 'model.safetensors')).equals(weights));
  assert.equal(readdirSync(join(cacheDir, '.locks', repoFolderName(tinyRepo.id))), [], 'locks released');
});

test('the token goes out as Authorization: Bearer (option, HF_TOKEN); 401 says to set HF_TOKEN', async () => {
  const cacheDir = freshCache();
  try {
    await resolveModel(privateRepo.id, { cacheDir, endpoint: hub.endpoint });
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /refused access to test-org\/gated \(HTTP 401\): set HF_TOKEN/);
  }
  const dir = await resolveModel(privateRepo.id, { cacheDir, endpoint: hub.endpoint, token: privateRepo.token });
  assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(fileOf(privateRepo, 'model.safetensors')));
  const apiCalls = hub.seen.filter((r) => r.url.startsWith('/api/'));
  assert.is(apiCalls.at(-1)!.headers.authorization, 'Bearer hf_test_secret');

  process.env.HF_TOKEN = privateRepo.token;
  process.env.HF_ENDPOINT = hub.endpoint;
  assert.is(
    await resolveModel(privateRepo.id, { cacheDir: freshCache() }),
    join(scratch, `cache-${caseNo}`, repoFolderName(privateRepo.id), 'snapshots', privateRepo.commit),
  );
  assert.ok(hub.seen.filter((r) => r.method === 'HEAD').every((r) => r.headers.authorization === 'Bearer hf_test_secret'));
});

test('404 names the model and the endpoint; an unknown revision says so', async () => {
  try {
    await resolveModel('test-org/nope', { cacheDir: freshCache(), endpoint: hub.endpoint });
    assert.unreachable('should throw');
  } catch (err) {
    assert.is((err as Error).message, `model test-org/nope not found at ${hub.endpoint} (check the id and --revision)`);
  }
  hub.unknownRepoStatus = 401;
  try {
    await resolveModel('test-org/nope', { cacheDir: freshCache(), endpoint: hub.endpoint });
    assert.unreachable('should throw');
  } catch (err) {
    assert.is(
      (err as Error).message,
      `model test-org/nope not found at ${hub.endpoint} (check the id and --revision); if it is private or gated, set HF_TOKEN`,
    );
  }
  try {
    await resolveModel(tinyRepo.id, { cacheDir: freshCache(), endpoint: hub.endpoint, revision: 'v9' });
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /revision v9 of test-org\/tiny-model not found/);
  }
});

test('a named revision writes refs/<revision>; a commit hash needs no ref', async () => {
  const cacheDir = freshCache();
  const dir = await resolveModel(tinyRepo.id, { cacheDir, endpoint: hub.endpoint, revision: 'v1' });
  const repoDir = join(cacheDir, repoFolderName(tinyRepo.id));
  assert.is(readFileSync(join(repoDir, 'refs', 'v1'), 'utf8'), tinyRepo.commit);
  assert.is(dir, join(repoDir, 'snapshots', tinyRepo.commit));
  const cacheDir2 = freshCache();
  await resolveModel(tinyRepo.id, { cacheDir: cacheDir2, endpoint: hub.endpoint, revision: tinyRepo.commit });
  assert.not.ok(existsSync(join(cacheDir2, repoFolderName(tinyRepo.id), 'refs')));
  await hub.stop();
  process.env.HF_HUB_OFFLINE = '1';
  assert.is(
    await resolveModel(tinyRepo.id, { cacheDir: cacheDir2, revision: tinyRepo.commit }),
    join(cacheDir2, repoFolderName(tinyRepo.id), 'snapshots', tinyRepo.commit),
  );
});

test('sharded weights: the shards the index names, not the consolidated copy', async () => {
  const dir = await resolveModel(shardedRepo.id, { cacheDir: freshCache(), endpoint: hub.endpoint });
  assert.equal(readdirSync(dir).sort(), [
    'config.json',
    'model-00001-of-00002.safetensors',
    'model-00002-of-00002.safetensors',
    'model.safetensors.index.json',
  ]);
  assert.ok(readFileSync(join(dir, 'model-00002-of-00002.safetensors')).equals(shardB));
  assert.ok(readFileSync(join(dir, 'model-00001-of-00002.safetensors')).equals(shardA));
});

test('no network and no cache: the error says so and points at HF_HUB_OFFLINE and local paths', async () => {
  const endpoint = hub.endpoint;
  await hub.stop();
  try {
    await resolveModel(tinyRepo.id, { cacheDir: freshCache(), endpoint });
    assert.unreachable('should throw');
  } catch (err) {
    const message = (err as Error).message;
    assert.match(message, /cannot download test-org\/tiny-model: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED/);
    assert.match(message, /HF_HUB_OFFLINE=1/);
    assert.match(message, /local model folder/);
  }
});

test('a local folder is returned as is; one without config.json or a missing path is an error', async () => {
  const folder = join(scratch, 'local-model');
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'config.json'), '{}');
  assert.is(await resolveModel(folder), folder);
  assert.is(await resolveModel('../shared/models/stories260K'), join(process.cwd(), '../shared/models/stories260K'));
  const empty = join(scratch, 'empty-model');
  mkdirSync(empty, { recursive: true });
  try {
    await resolveModel(empty);
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /has no config\.json/);
  }
  try {
    await resolveModel('./no/such/folder');
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /does not exist/);
  }
  assert.is(hub.seen.length, 0, 'local paths never reach the hub');
});

test('cache folder: HF_HUB_CACHE over HF_HOME/hub over ~/.cache/huggingface/hub', async () => {
  assert.is(hubCacheDir({ HF_HUB_CACHE: '/a', HF_HOME: '/b' }), '/a');
  assert.is(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/old', HF_HOME: '/b' }), '/old');
  assert.is(hubCacheDir({ HF_HUB_CACHE: '/a', HUGGINGFACE_HUB_CACHE: '/old' }), '/a');
  assert.is(hubCacheDir({ HF_HOME: '/b' }), '/b/hub');
  assert.is(hubCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/huggingface/hub');
  assert.is(hubCacheDir({}), join(homedir(), '.cache', 'huggingface', 'hub'));
  // And resolveModel follows them when no cacheDir is given.
  const home = join(scratch, 'hf-home');
  process.env.HF_HOME = home;
  const viaHome = await resolveModel(tinyRepo.id, { endpoint: hub.endpoint });
  assert.ok(viaHome.startsWith(join(home, 'hub', 'models--test-org--tiny-model')));
  const hubCache = join(scratch, 'hub-cache');
  process.env.HF_HUB_CACHE = hubCache;
  const viaCache = await resolveModel(tinyRepo.id, { endpoint: hub.endpoint });
  assert.ok(viaCache.startsWith(join(hubCache, 'models--test-org--tiny-model')), viaCache);
});

test('progress: one line per downloaded file when stderr is not a TTY', async () => {
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  const isTTY = process.stderr.isTTY;
  process.stderr.isTTY = false;
  process.stderr.write = ((chunk: string) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    await resolveModel(tinyRepo.id, { cacheDir: freshCache(), endpoint: hub.endpoint, progress: true });
  } finally {
    process.stderr.write = write;
    process.stderr.isTTY = isTTY;
  }
  assert.is(lines.length, 5, lines.join(''));
  assert.ok(
    lines.some((l) => /^\[hub\] downloaded model\.safetensors \(300\.0 kB\)/.test(l)),
    lines.join(''),
  );
});

test('progress on a TTY: a redrawn bar per file (common/progress.ts), replaced by its summary line', async () => {
  let text = '';
  const write = process.stderr.write.bind(process.stderr);
  const isTTY = process.stderr.isTTY;
  process.stderr.isTTY = true;
  process.stderr.write = ((chunk: string) => {
    text += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    await resolveModel(tinyRepo.id, { cacheDir: freshCache(), endpoint: hub.endpoint, progress: true });
  } finally {
    process.stderr.write = write;
    process.stderr.isTTY = isTTY;
  }
  assert.match(text, /\r\[hub\] \[#{30}\] 100% 300\.0 kB\/300\.0 kB [\d.]+ [kMG]?B\/s model\.safetensors\x1b\[K/);
  assert.match(text, /\r\x1b\[K\[hub\] downloaded model\.safetensors \(300\.0 kB\) in \d+\.\d s\n/);
  assert.is(text.split('\n').length - 1, 5, 'one finished line per file');
});

test.run();
