// Writing safetensors: one file tensor by tensor (the header first, then each tensor's bytes as its
// producer hands them over, so a whole model never sits in memory), and a model folder split into
// shards with model.safetensors.index.json as transformers' save_pretrained(max_shard_size) writes it.
// The quantize command writes its output with it; tests and benches write synthetic checkpoints.
import { open, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BYTES_PER_ELEMENT, MAX_READ_BYTES } from './safetensors.js';

export interface TensorSpec {
  name: string;
  /** A safetensors dtype name: F32, F16, BF16, I32, ... */
  dtype: string;
  shape: number[];
}

/** A tensor's raw little-endian bytes, as any typed array whose element type matches the spec's dtype. */
export type TensorData = Float32Array | Uint16Array | Int32Array | Uint32Array | Uint8Array;

export type TensorProducer = (spec: TensorSpec, index: number) => TensorData | Promise<TensorData>;

export function tensorByteLength(spec: TensorSpec): number {
  const size = BYTES_PER_ELEMENT[spec.dtype];
  if (size === undefined) throw new Error(`safetensors writer: tensor "${spec.name}" has unknown dtype ${spec.dtype}`);
  return spec.shape.reduce((a, b) => a * b, 1) * size;
}

/**
 * Writes one safetensors file, asking `produce` for each tensor's bytes in spec order (awaiting each).
 * Returns the number of bytes written.
 */
export async function writeSafetensorsFile(
  path: string,
  specs: readonly TensorSpec[],
  produce: TensorProducer,
  metadata?: Record<string, string>,
): Promise<number> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const spec of specs) {
    if (spec.name in header) throw new Error(`safetensors writer: duplicate tensor name "${spec.name}"`);
    const byteLength = tensorByteLength(spec);
    header[spec.name] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  let headerText = JSON.stringify(header);
  headerText += ' '.repeat((8 - ((8 + Buffer.byteLength(headerText)) % 8)) % 8); // align data to 8 bytes, as the format recommends
  const headerBytes = Buffer.from(headerText, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));

  const handle = await open(path, 'w');
  try {
    let position = await writeFully(handle, prefix, 0);
    position = await writeFully(handle, headerBytes, position);
    for (const [i, spec] of specs.entries()) {
      const data = await produce(spec, i);
      const expected = tensorByteLength(spec);
      if (data.byteLength !== expected) {
        throw new Error(`safetensors writer: tensor "${spec.name}" ${spec.dtype}[${spec.shape.join(', ')}] needs ${expected} bytes, got ${data.byteLength}`);
      }
      position = await writeFully(handle, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), position);
    }
  } finally {
    await handle.close();
  }
  return 8 + headerBytes.length + offset;
}

/**
 * Writes `specs` into `dir` as model.safetensors, or, when they exceed maxShardBytes, as contiguous
 * shards model-0000i-of-0000n.safetensors plus model.safetensors.index.json. Returns the file names.
 */
export async function writeSafetensorsFolder(
  dir: string,
  specs: readonly TensorSpec[],
  produce: TensorProducer,
  options: { maxShardBytes?: number; metadata?: Record<string, string> } = {},
): Promise<string[]> {
  const maxShardBytes = options.maxShardBytes ?? 5 * 1024 ** 3;
  const metadata = options.metadata ?? { format: 'pt' };
  const shards: { specs: TensorSpec[]; first: number; bytes: number }[] = [];
  for (const [i, spec] of specs.entries()) {
    const bytes = tensorByteLength(spec);
    let current = shards[shards.length - 1];
    if (!current || (current.bytes > 0 && current.bytes + bytes > maxShardBytes)) {
      current = { specs: [], first: i, bytes: 0 };
      shards.push(current);
    }
    current.specs.push(spec);
    current.bytes += bytes;
  }
  if (shards.length <= 1) {
    await writeSafetensorsFile(join(dir, 'model.safetensors'), specs, produce, metadata);
    return ['model.safetensors'];
  }
  const weightMap: Record<string, string> = {};
  const files: string[] = [];
  let totalSize = 0;
  for (const [i, shard] of shards.entries()) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    files.push(file);
    for (const spec of shard.specs) {
      weightMap[spec.name] = file;
      totalSize += tensorByteLength(spec);
    }
    await writeSafetensorsFile(join(dir, file), shard.specs, (spec, j) => produce(spec, shard.first + j), metadata);
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`);
  return files;
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(bytes.byteLength - done, MAX_READ_BYTES), position + done);
    done += bytesWritten;
  }
  return position + done;
}
