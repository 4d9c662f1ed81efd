// The import-graph check (`npm run lint:deps`, .dependency-cruiser.cjs) passes on this tree and fails
// on a small tree with an upward import, a cycle and a src -> test import, so it can really fail.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const root = resolve(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '../..');
const depcruise = join(root, 'node_modules', '.bin', 'depcruise');
const config = join(root, '.dependency-cruiser.cjs');

function cruise(cwd: string, dirs: string[]) {
  const r = spawnSync(depcruise, [...dirs, '--config', config, '--output-type', 'err'], { cwd, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

test('this tree has no cycle and no upward import', () => {
  const r = cruise(root, ['src', 'bench', 'test']);
  assert.is(r.code, 0, r.out);
});

test('an upward import, a cycle and src -> test each fail the check, named by rule', () => {
  const dir = mkdtempSync(join(tmpdir(), 'import-graph-'));
  try {
    const files: Record<string, string> = {
      'tsconfig.test.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }),
      'src/engine/engine.ts': 'export const engine = 1;\n',
      'src/gpu/device.ts': "import { engine } from '../engine/engine.js';\nexport const device = engine;\n",
      'src/kv/a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
      'src/kv/b.ts': "import { a } from './a.js';\nexport const b = () => a;\n",
      'src/common/types.ts': "import { helper } from '../../test/helpers/x.js';\nexport const t = helper;\n",
      'test/helpers/x.ts': 'export const helper = 1;\n',
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    const r = cruise(dir, ['src', 'test']);
    assert.is.not(r.code, 0, 'violations fail the command');
    assert.match(r.out, /layer-gpu: src\/gpu\/device\.ts → src\/engine\/engine\.ts/);
    assert.match(r.out, /no-circular: src\/kv\/a\.ts/);
    assert.match(r.out, /src-not-to-test-or-bench: src\/common\/types\.ts → test\/helpers\/x\.ts/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
