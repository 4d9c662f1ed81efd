// The Dockerfile, without a Docker engine: lint it with dockerfile-utils (the validator behind VS Code's
// Dockerfile support), check the invariants deployment relies on (stages, non-root user, NVIDIA
// passthrough, port, entrypoint), that every COPY source exists and survives .dockerignore, and run
// the HEALTHCHECK command itself against a stand-in server.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { validate } from 'dockerfile-utils';

const dockerfile = readFileSync('Dockerfile', 'utf8');
const dockerignore = readFileSync('.dockerignore', 'utf8');

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** Instructions with continuation lines joined and comments dropped: enough of Docker's parser here. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (/^\s*(#|$)/.test(lines[i]!)) continue;
    const start = i;
    let joined = lines[i]!;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) joined = joined.replace(/\\\s*$/, ' ') + lines[++i]!.trim();
    const m = /^\s*(\S+)\s*(.*)$/.exec(joined)!;
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start + 1 });
  }
  return out;
}

/** ARGs declared before the first FROM: the only variables a FROM line can use. */
function globalArgs(instructions: Instruction[]): Map<string, string> {
  const args = new Map<string, string>();
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') break;
    if (ins.keyword !== 'ARG') continue;
    const m = /^(\w+)(?:=(\S*))?$/.exec(ins.args);
    assert.ok(m, `line ${ins.line}: ARG ${ins.args}`);
    args.set(m[1]!, m[2] ?? '');
  }
  return args;
}

/** ${NAME} and $NAME replaced by the global ARGs' defaults (what `docker build` does without --build-arg). */
function expand(text: string, args: Map<string, string>): string {
  return text.replace(/\$(?:\{(\w+)\}|(\w+))/g, (_, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    assert.ok(args.has(name), `\${${name}} is not a global ARG`);
    return args.get(name)!;
  });
}

/** Splits the file into stages: FROM <image> AS <name> and what follows it (image with ARGs expanded). */
function stages(instructions: Instruction[]): Array<{ image: string; name: string; body: Instruction[] }> {
  const args = globalArgs(instructions);
  const out: Array<{ image: string; name: string; body: Instruction[] }> = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!;
      out.push({ image: expand(m[1]!, args), name: m[2] ?? String(out.length), body: [] });
    } else if (out.length === 0) {
      assert.is(ins.keyword, 'ARG', `line ${ins.line}: ${ins.keyword} before FROM`);
    } else {
      out.at(-1)!.body.push(ins);
    }
  }
  return out;
}

/** Docker's .dockerignore rule: the last pattern matching the path or one of its parent folders wins. */
function isIgnored(path: string, patterns: string[]): boolean {
  let ignored = false;
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, '');
    const re = new RegExp(
      `^${pattern
        .split('**')
        .map((s) =>
          s
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '[^/]*')
            .replace(/\?/g, '[^/]'),
        )
        .join('.*')}$`,
    );
    if (prefixes.some((p) => re.test(p))) ignored = !negate;
  }
  return ignored;
}

const ignorePatterns = dockerignore
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const instructions = parseDockerfile(dockerfile);
const [build, runtime] = stages(instructions);
const runOf = (stage: { body: Instruction[] }) => stage.body.filter((i) => i.keyword === 'RUN').map((i) => i.args);
const jsonArgs = (keyword: string, stage: { body: Instruction[] }) => {
  const found = stage.body.filter((i) => i.keyword === keyword);
  assert.is(found.length, 1, `exactly one ${keyword}`);
  return JSON.parse(found[0]!.args) as string[];
};

test('the linter (dockerfile-utils) reports nothing, and does catch a broken Dockerfile', () => {
  const diagnostics = validate(dockerfile).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
  assert.equal(diagnostics, []);
  const broken = dockerfile.replace('EXPOSE 23333', 'EXPOSE 23333/tpc').replaceAll('WORKDIR /app', 'WORKDIR app');
  assert.is(validate(broken).length, 3, 'two WORKDIRs made relative and one bad protocol are found');
});

test('two stages on node:<NODE_VERSION>-bookworm-slim: build (npm ci, build, prune) and runtime', () => {
  assert.is(stages(instructions).length, 2);
  const image = `node:${globalArgs(instructions).get('NODE_VERSION')}-bookworm-slim`;
  assert.equal([build!.image, build!.name, runtime!.image, runtime!.name], [image, 'build', image, 'runtime']);
  const buildRuns = runOf(build!).join(' && ');
  for (const step of ['npm ci', 'npm run build', 'npm prune --omit=dev']) assert.ok(buildRuns.includes(step), step);
  assert.ok(buildRuns.indexOf('npm ci') < buildRuns.indexOf('npm run build'));
  assert.ok(buildRuns.indexOf('npm run build') < buildRuns.indexOf('npm prune'));
  assert.not.ok(runOf(runtime!).join(' ').includes('npm '), 'the runtime stage installs no npm packages');
});

test('the build stage copies what `npm run build` reads (src, tsconfig, and web/ with scripts/build-web.mjs) before it', () => {
  const script = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts.build!;
  const needed = ['package.json', 'package-lock.json', 'tsconfig.json', 'src'];
  for (const m of script.matchAll(/\bnode (scripts\/\S+\.m?js)\b/g)) needed.push(m[1]!);
  if (script.includes('scripts/build-web.mjs')) needed.push('web');
  const runAt = build!.body.findIndex((i) => i.keyword === 'RUN' && i.args.includes('npm run build'));
  const copied = build!.body
    .slice(0, runAt)
    .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from='))
    .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  for (const path of needed) assert.ok(copied.includes(path), `${path} is copied into the build stage before npm run build`);
});

test('the Node version is one ARG, NODE_VERSION, used by both FROMs, and a current LTS major (>= 24)', () => {
  const args = instructions.filter((i) => i.keyword === 'ARG' && /^NODE_VERSION\b/.test(i.args));
  assert.is(args.length, 1, 'one ARG NODE_VERSION');
  const firstFrom = instructions.findIndex((i) => i.keyword === 'FROM');
  assert.ok(instructions.indexOf(args[0]!) < firstFrom, 'declared before the first FROM, so both stages see it');
  const version = globalArgs(instructions).get('NODE_VERSION')!;
  assert.match(version, /^\d+$/, 'a major: the image follows its patch releases');
  assert.ok(Number(version) >= 24, `Node ${version}: Node 20 is end-of-life, ship the current LTS`);
  const froms = instructions.filter((i) => i.keyword === 'FROM').map((i) => i.args.split(/\s+/)[0]);
  assert.is(froms.length, 2);
  for (const image of froms) assert.match(image!, /^node:\$\{NODE_VERSION\}-bookworm-slim$/, 'no version written twice');
  assert.not.match(dockerfile, /node:\d+/, 'no hard-coded node:<major> image anywhere');
  // CI runs the suite on the same major (scripts/install-node.sh, called from .ci/run).
  const ciNode = /^NODE_LTS=(\d+)\.\d+\.\d+/m.exec(readFileSync('.ci/run', 'utf8'));
  assert.is(ciNode?.[1], version, '.ci/run tests the Node major the image ships');
});

test('runtime: the Vulkan fallback comes from scripts/install-software-gpu.sh, apt lists are cleaned', () => {
  const copies = runtime!.body.filter((i) => i.keyword === 'COPY').map((i) => i.args);
  assert.ok(copies.includes('scripts/install-software-gpu.sh /tmp/install-software-gpu.sh'));
  const run = runOf(runtime!).find((r) => r.includes('install-software-gpu.sh'));
  assert.ok(run?.startsWith('bash /tmp/install-software-gpu.sh'), run);
  assert.ok(run!.includes('rm -rf /var/lib/apt/lists/*'), 'apt lists removed in the same layer');
  const script = readFileSync('scripts/install-software-gpu.sh', 'utf8');
  assert.match(script, /bookworm-backports mesa-vulkan-drivers libvulkan1/);
});

test('runtime: NVIDIA passthrough, XDG_RUNTIME_DIR, non-root user, port, entrypoint and command', () => {
  const env = new Map<string, string>();
  for (const ins of runtime!.body.filter((i) => i.keyword === 'ENV')) {
    for (const m of ins.args.matchAll(/(\w+)=(\S+)/g)) env.set(m[1]!, m[2]!);
  }
  assert.is(env.get('NVIDIA_VISIBLE_DEVICES'), 'all');
  assert.equal(env.get('NVIDIA_DRIVER_CAPABILITIES')?.split(',').sort(), ['compute', 'graphics', 'utility'], 'graphics mounts the Vulkan ICD');
  assert.is(env.get('XDG_RUNTIME_DIR'), '/tmp');
  const users = runtime!.body.filter((i) => i.keyword === 'USER');
  assert.is(users.at(-1)?.args, 'node');
  const lastUser = runtime!.body.indexOf(users.at(-1)!);
  assert.ok(
    runtime!.body.slice(lastUser).every((i) => i.keyword !== 'RUN'),
    'nothing runs as root after USER',
  );
  assert.equal(
    runtime!.body.filter((i) => i.keyword === 'EXPOSE').map((i) => i.args),
    ['23333'],
  );
  assert.equal(jsonArgs('ENTRYPOINT', runtime!), ['node', 'dist/cli.js']);
  assert.equal(jsonArgs('CMD', runtime!), ['serve', '/models/model', '--server-name', '0.0.0.0']);
  // dist/cli.js is what `npm run build` makes of src/cli.ts.
  const tsconfig = JSON.parse(readFileSync('tsconfig.json', 'utf8')) as { compilerOptions: { outDir: string; rootDir: string } };
  assert.equal([tsconfig.compilerOptions.rootDir, tsconfig.compilerOptions.outDir], ['src', 'dist']);
  assert.ok(existsSync('src/cli.ts'));
});

test('every COPY source exists and is in the build context; the rest stays out', () => {
  const sources: string[] = [];
  for (const stage of [build!, runtime!]) {
    for (const ins of stage.body.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from='))) {
      sources.push(...ins.args.split(/\s+/).slice(0, -1));
    }
  }
  assert.ok(sources.length >= 5, sources.join(' '));
  for (const source of sources) {
    assert.ok(existsSync(source), `${source} exists`);
    assert.not.ok(isIgnored(source, ignorePatterns), `${source} is not excluded by .dockerignore`);
  }
  for (const inside of ['src/cli.ts', 'shaders/matmul.wgsl', 'web/src/main.ts', 'scripts/build-web.mjs'])
    assert.not.ok(isIgnored(inside, ignorePatterns), inside);
  for (const outside of ['node_modules/ajv/package.json', 'dist/cli.js', '.git/HEAD', 'test/unit/hub.test.ts', 'scripts/setup.sh', 'k8s/deployment.yaml']) {
    assert.ok(isIgnored(outside, ignorePatterns), `${outside} is excluded`);
  }
  // COPY --from=build takes what the build stage made in its WORKDIR.
  const fromBuild = runtime!.body.filter((i) => i.args.startsWith('--from=build')).map((i) => i.args.split(/\s+/)[1]);
  assert.equal(fromBuild, ['/app/package.json', '/app/node_modules', '/app/dist']);
  assert.ok(build!.body.some((i) => i.keyword === 'WORKDIR' && i.args === '/app'));
});

test('the HEALTHCHECK command exits 0 on 200 from /health and 1 on 503 or no server', async () => {
  const healthcheck = runtime!.body.find((i) => i.keyword === 'HEALTHCHECK')!;
  assert.match(healthcheck.args, /--start-period=\d+m/);
  const argv = JSON.parse(healthcheck.args.replace(/^.*?CMD\s+/, '')) as string[];
  assert.is(argv[0], 'node', 'no curl in the image: node does the request');
  assert.match(argv.join(' '), /http:\/\/127\.0\.0\.1:23333\/health/);
  let status = 200;
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(status).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  // The same command, pointed at the stand-in's port.
  const run = () =>
    promisify(execFile)(
      process.execPath,
      argv.slice(1).map((a) => a.replace(':23333/', `:${port}/`)),
      { timeout: 10_000 },
    ).then(
      () => 0,
      (err: { code?: number }) => err.code ?? -1,
    );
  try {
    assert.is(await run(), 0, 'healthy');
    status = 503;
    assert.is(await run(), 1, 'loading or lost GPU');
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
  assert.is(await run(), 1, 'no server');
  assert.equal(seen, ['/health', '/health']);
});

test.run();
