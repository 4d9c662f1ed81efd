import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile, open, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsReader, f32ToF16Bits, f16BitsToF32, f32ToBf16Bits, bf16BitsToF32, f32BitsToF16Bits } from '../../src/checkpoint/safetensors.js';
import { writeSafetensors } from '../support/safetensors-writer.js';

let root = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'st-test-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

function randomF32(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 6;
  }
  return out;
}

const tensors = [
  { name: 'a.weight', shape: [7, 13], data: randomF32(91, 1) },
  { name: 'b.bias', shape: [13], data: randomF32(13, 2) },
  { name: 'c.weight', shape: [3, 5, 11], data: randomF32(165, 3) },
];

async function dirWith(name: string, dtype: 'F32' | 'F16' | 'BF16'): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await writeSafetensors(
    join(dir, 'model.safetensors'),
    tensors.map((t) => ({ ...t, dtype })),
    { format: 'pt' },
  );
  return dir;
}

function assertClose(actual: Float32Array, expected: Float32Array, relTol: number, what: string) {
  assert.is(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) {
    const tol = relTol * Math.abs(expected[i]!);
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]} (tol ${tol})`);
  }
}

test('F32, F16, BF16 and a sharded index load the same tensors (within dtype rounding)', async () => {
  const sharded = join(root, 'sharded');
  await mkdir(sharded);
  await writeSafetensors(join(sharded, 'model-00001-of-00002.safetensors'), [{ ...tensors[0]!, dtype: 'F32' }]);
  await writeSafetensors(
    join(sharded, 'model-00002-of-00002.safetensors'),
    tensors.slice(1).map((t) => ({ ...t, dtype: 'F32' as const })),
  );
  await writeFile(
    join(sharded, 'model.safetensors.index.json'),
    JSON.stringify({
      metadata: { total_size: 0 },
      weight_map: {
        'a.weight': 'model-00001-of-00002.safetensors',
        'b.bias': 'model-00002-of-00002.safetensors',
        'c.weight': 'model-00002-of-00002.safetensors',
      },
    }),
  );
  const cases: [string, number][] = [
    [await dirWith('f32', 'F32'), 0],
    [await dirWith('f16', 'F16'), 2 ** -11],
    [await dirWith('bf16', 'BF16'), 2 ** -8],
    [sharded, 0],
  ];
  for (const [dir, tol] of cases) {
    const reader = await SafetensorsReader.open(dir);
    assert.equal([...reader.tensors.keys()].sort(), ['a.weight', 'b.bias', 'c.weight']);
    for (const t of tensors) {
      assert.equal(reader.tensors.get(t.name)!.shape, t.shape);
      const f32 = await reader.read(t.name, 'f32');
      assert.instance(f32, Float32Array);
      assertClose(f32 as Float32Array, t.data, tol, `${dir} ${t.name}`);
      const f16 = await reader.read(t.name, 'f16');
      assert.instance(f16, Uint16Array);
      // Whatever the stored dtype, f16 output is the RNE rounding of the stored value.
      assert.equal(Array.from(f16), Array.from(f32ToF16Bits(f32 as Float32Array)), `${dir} ${t.name} as f16`);
    }
    await reader.close();
  }
});

test('f32 -> f16 rounds to nearest even, with subnormals, overflow, NaN and -0', () => {
  const bitsOf = (x: number) => f32ToF16Bits(new Float32Array([x]))[0];
  assert.is(bitsOf(1), 0x3c00);
  assert.is(bitsOf(1 + 2 ** -11), 0x3c00, 'halfway rounds down to even');
  assert.is(bitsOf(1 + 3 * 2 ** -11), 0x3c02, 'halfway rounds up to even');
  assert.is(bitsOf(1 + 2 ** -11 + 2 ** -20), 0x3c01, 'above halfway rounds up');
  assert.is(bitsOf(65504), 0x7bff);
  assert.is(bitsOf(65519), 0x7bff);
  assert.is(bitsOf(65520), 0x7c00, 'overflow to inf');
  assert.is(bitsOf(-Infinity), 0xfc00);
  assert.is(bitsOf(2 ** -24), 0x0001, 'smallest subnormal');
  assert.is(bitsOf(2 ** -25), 0x0000, 'half the smallest subnormal rounds to even (0)');
  assert.is(bitsOf(1.5 * 2 ** -25), 0x0001);
  assert.is(bitsOf(3 * 2 ** -25), 0x0002, 'subnormal halfway rounds to even');
  assert.is(bitsOf(2 ** -14 - 2 ** -25), 0x0400, 'rounding carries into the smallest normal');
  assert.is(bitsOf(-0), 0x8000);
  assert.is(bitsOf(1e-10), 0);
  const nan = bitsOf(NaN)!;
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, 'NaN stays NaN');
  // Every finite f16 survives f16 -> f32 -> f16.
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = f32ToF16Bits(f16BitsToF32(all));
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue;
    if (back[h] !== h) assert.unreachable(`f16 ${h.toString(16)} round-tripped to ${back[h]!.toString(16)}`);
  }
  assert.is(f32BitsToF16Bits(0x3f800000), 0x3c00);
});

test('f32 -> bf16 rounds to nearest even', () => {
  const bits = (x: number) => f32ToBf16Bits(new Float32Array([x]))[0];
  assert.is(bits(1), 0x3f80);
  assert.is(bits(1 + 2 ** -8), 0x3f80, 'halfway to even (down)');
  assert.is(bits(1 + 3 * 2 ** -8), 0x3f82, 'halfway to even (up)');
  assert.is(bf16BitsToF32(new Uint16Array([0x3f82]))[0], 1 + 2 ** -6);
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(new Float32Array([NaN])))[0]));
});

test('a read touches only its own bytes, at offsets beyond 4 GB, without reading the file whole', async () => {
  // A 5 GB sparse file: a small tensor at the start and one 4.5 GB in. Reading the file whole would need
  // 5 GB of memory (and exceed Node's buffer limit); reading by range needs a few bytes.
  const dir = join(root, 'huge');
  await mkdir(dir);
  const near = new Float32Array([1, 2, 3, 4]);
  const far = new Float32Array([-1.5, 2.25, 1e-3]);
  const farOffset = 4.5 * 2 ** 30;
  const header = JSON.stringify({
    near: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
    gap: { dtype: 'F16', shape: [(farOffset - 16) / 2], data_offsets: [16, farOffset] },
    far: { dtype: 'F32', shape: [3], data_offsets: [farOffset, farOffset + 12] },
  });
  const headerBytes = Buffer.from(header.padEnd(Math.ceil(header.length / 8) * 8, ' '));
  const dataStart = 8 + headerBytes.length;
  const file = join(dir, 'model.safetensors');
  const handle = await open(file, 'w');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  await handle.write(prefix, 0, 8, 0);
  await handle.write(headerBytes, 0, headerBytes.length, 8);
  await handle.write(Buffer.from(near.buffer), 0, 16, dataStart);
  await handle.write(Buffer.from(far.buffer), 0, 12, dataStart + farOffset);
  await handle.close();

  const reader = await SafetensorsReader.open(dir);
  assert.is(reader.tensors.get('far')!.byteOffset, dataStart + farOffset);
  assert.equal(Array.from(await reader.read('far', 'f32')), Array.from(far));
  assert.is(reader.numTensorBytesRead, 12, 'reading "far" read only its 12 bytes');
  assert.equal(Array.from(await reader.read('near', 'f32')), [1, 2, 3, 4]);
  assert.is(reader.numTensorBytesRead, 28);
  await reader.close();
});

async function writeRaw(dir: string, bytes: Uint8Array) {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'model.safetensors'), bytes);
}

function rawFile(header: unknown, dataBytes: number, headerLengthOverride?: number): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const out = Buffer.alloc(8 + json.length + dataBytes);
  out.writeBigUInt64LE(BigInt(headerLengthOverride ?? json.length));
  json.copy(out, 8);
  return out;
}

async function openError(dir: string): Promise<string> {
  try {
    await SafetensorsReader.open(dir);
  } catch (err) {
    return (err as Error).message;
  }
  return assert.unreachable('should throw') as never;
}

test('header errors say what is wrong', async () => {
  await writeRaw(join(root, 'trunc'), rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 8, 1 << 20));
  assert.match(await openError(join(root, 'trunc')), /header length 1048576 does not fit.*truncated/);
  await writeRaw(join(root, 'notjson'), rawFile('{not json', 0));
  assert.match(await openError(join(root, 'notjson')), /header is not JSON/);
  await writeRaw(join(root, 'past'), rawFile({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8));
  assert.match(await openError(join(root, 'past')), /tensor "a" ends at byte .* past the end of the file/);
  await writeRaw(join(root, 'size'), rawFile({ a: { dtype: 'F16', shape: [4], data_offsets: [0, 16] } }, 16));
  assert.match(await openError(join(root, 'size')), /tensor "a" F16\[4\] needs 8 bytes but data_offsets span 16/);
  await writeRaw(join(root, 'tiny'), new Uint8Array(3));
  assert.match(await openError(join(root, 'tiny')), /only 3 bytes/);
  await mkdir(join(root, 'empty'));
  assert.match(await openError(join(root, 'empty')), /no model.safetensors or model.safetensors.index.json/);
});

test('one safetensors file under another name (AutoGPTQ-era repos) opens; two without an index are named in the error', async () => {
  const dir = join(root, 'gptq-named');
  await mkdir(dir);
  const bytes = rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 8);
  await writeFile(join(dir, 'gptq_model-4bit-128g.safetensors'), bytes);
  const reader = await SafetensorsReader.open(dir);
  assert.ok(reader.has('w'));
  await reader.close();
  await writeFile(join(dir, 'other.safetensors'), bytes);
  assert.match(await openError(dir), /found gptq_model-4bit-128g.safetensors, other.safetensors without an index/);
});

test('unsupported dtypes: open succeeds, reading names the tensor and dtype', async () => {
  const dir = join(root, 'int');
  await writeRaw(
    dir,
    rawFile(
      { __metadata__: { format: 'pt' }, ids: { dtype: 'F64', shape: [2], data_offsets: [0, 16] }, w: { dtype: 'F32', shape: [1], data_offsets: [16, 20] } },
      20,
    ),
  );
  const reader = await SafetensorsReader.open(dir);
  assert.ok(reader.has('ids'));
  assert.ok(!reader.tensors.has('ids'));
  try {
    await reader.read('ids', 'f32');
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /tensor "ids" has dtype F64; supported: F32, F16, BF16 and, for 4-bit checkpoints' integer tensors, I32, I64/);
  }
  await assertRejectsWith(() => reader.read('nope', 'f32'), /tensor "nope" is not in the safetensors files/);
  await reader.close();
});

test('index errors: a mapped tensor missing from its shard', async () => {
  const dir = join(root, 'badindex');
  await mkdir(dir);
  await writeSafetensors(join(dir, 'model-00001-of-00001.safetensors'), [{ ...tensors[1]!, dtype: 'F32' }]);
  await writeFile(
    join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { 'b.bias': 'model-00001-of-00001.safetensors', 'x.weight': 'model-00001-of-00001.safetensors' } }),
  );
  assert.match(await openError(dir), /maps "x.weight" to model-00001-of-00001.safetensors, but that file has no such tensor/);
});

async function assertRejectsWith(fn: () => Promise<unknown>, pattern: RegExp) {
  try {
    await fn();
  } catch (err) {
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable('should reject');
}

test.run();
