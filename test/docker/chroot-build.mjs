#!/usr/bin/env node
// Builds the Dockerfile without a Docker engine, so that every RUN line in it is really run:
// each stage is an overlay on a Debian bookworm root made by debootstrap with Node 20 and the `node`
// user added (what node:20-bookworm-slim is), its RUN lines run in a chroot as /bin/sh -c with the
// stage's ENV, WORKDIR and USER, its COPY lines copy from the build context or an earlier stage.
// Then it runs the image's ENTRYPOINT with `devices` as the image's user (Dawn on lavapipe).
// Needs root, overlayfs and debootstrap; reaches deb.debian.org and the npm registry. Minutes, ~1.5 GB.
// Behind a TLS-intercepting proxy, BUILD_CA_FILE=<its CA bundle> lends RUN lines that CA.
//
//   node test/docker/chroot-build.mjs prepare-base /tmp/ship-rootfs     # once: the base image
//   node test/docker/chroot-build.mjs build /tmp/ship-rootfs <context> <workdir> [smoke args...]
//
// Supports the instructions this project's Dockerfile uses (FROM .. AS, WORKDIR, COPY [--from],
// RUN, ENV, USER; EXPOSE/HEALTHCHECK/ENTRYPOINT/CMD are recorded). Not a general Docker builder.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';

const [mode, baseRoot, ...rest] = process.argv.slice(2);
const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: 'inherit', ...opts });

if (mode === 'prepare-base') prepareBase(baseRoot);
else if (mode === 'build') build(baseRoot, rest[0], rest[1], rest.slice(2));
else {
  console.error('usage: chroot-build.mjs prepare-base <root> | build <root> <context> <workdir> [smoke args...]');
  process.exit(2);
}

/** node:20-bookworm-slim, rebuilt: debian bookworm minbase + this machine's Node 20 + user node (1000). */
function prepareBase(root) {
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
  const node = execFileSync('sh', ['-c', 'readlink -f "$(command -v node)"'], { encoding: 'utf8' }).trim();
  const npmDir = execFileSync('sh', ['-c', 'dirname "$(dirname "$(readlink -f "$(command -v npm)")")"'], { encoding: 'utf8' }).trim();
  mkdirSync(join(root, 'usr/local/lib/node_modules'), { recursive: true });
  cpSync(node, join(root, 'usr/local/bin/node'));
  if (!existsSync(join(root, 'usr/local/lib/node_modules/npm')))
    cpSync(npmDir, join(root, 'usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  sh('ln', ['-sf', '../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr/local/bin/npm')]);
  sh('ln', ['-sf', '../lib/node_modules/npm/bin/npx-cli.js', join(root, 'usr/local/bin/npx')]);
  // As the node image's Dockerfile does.
  const hasUser = readFileSync(join(root, 'etc/passwd'), 'utf8').includes('\nnode:');
  if (!hasUser) sh('chroot', [root, 'sh', '-c', 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node']);
  console.log(`base ready: ${root} (node ${execFileSync(join(root, 'usr/local/bin/node'), ['--version'], { encoding: 'utf8' }).trim()})`);
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
    // Private mounts: every overlay and bind mount disappears with this process.
    const res = spawnSync('unshare', ['-m', process.execPath, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, CHROOT_BUILD_UNSHARED: '1' },
    });
    process.exit(res.status ?? 1);
  }
  const smokeArgs = process.argv.slice(6);
  const stages = new Map();
  let stage = null;
  for (const ins of parse(readFileSync(join(context, 'Dockerfile'), 'utf8'))) {
    console.log(`\n>>> ${ins.keyword} ${ins.args}`);
    if (ins.keyword === 'FROM') {
      const [, image, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (image !== 'node:20-bookworm-slim') throw new Error(`only node:20-bookworm-slim is prepared, not ${image}`);
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
        env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', NODE_VERSION: process.version.slice(1) },
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
  if (smokeArgs.length) {
    const entrypoint = JSON.parse(stage.entrypoint);
    const quoted = [...entrypoint, ...smokeArgs].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    console.log(`\n>>> smoke test: ${quoted} as ${stage.user}`);
    run(stage, quoted);
  }
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
