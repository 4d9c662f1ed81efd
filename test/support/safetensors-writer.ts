// A tensor-by-tensor safetensors writer for tests and benches (synthetic checkpoints); the server only reads.
import { open, type FileHandle } from 'node:fs/promises';
import { f32ToBf16Bits, f32ToF16Bits } from '../../src/common/half.js';
import { BYTES_PER_ELEMENT, MAX_READ_BYTES, type SafetensorsDtype } from '../../src/checkpoint/safetensors.js';

function encode(data: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  const encoded = dtype === 'F32' ? data : dtype === 'F16' ? f32ToF16Bits(data) : f32ToBf16Bits(data);
  return new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength);
}

export interface TensorSpec {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
}

/** Writes a safetensors file from f32 data (converted to each tensor's dtype). For tests and benches. */
export async function writeSafetensors(
  path: string,
  tensors: { name: string; dtype: SafetensorsDtype; shape: number[]; data: Float32Array }[],
  metadata?: Record<string, string>,
): Promise<void> {
  await writeSafetensorsStreaming(path, tensors, (_spec, i) => tensors[i]!.data, metadata);
}

/**
 * Writes a safetensors file asking `produce` for one tensor's f32 data at a time, so a large synthetic model
 * never has to sit in memory whole. Returns the number of bytes written.
 */
export async function writeSafetensorsStreaming(
  path: string,
  specs: readonly TensorSpec[],
  produce: (spec: TensorSpec, index: number) => Float32Array | Promise<Float32Array>,
  metadata?: Record<string, string>,
): Promise<number> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const spec of specs) {
    if (spec.name in header) throw new Error(`writeSafetensors: duplicate tensor name "${spec.name}"`);
    const byteLength = numElements(spec.shape) * BYTES_PER_ELEMENT[spec.dtype]!;
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
      const expected = numElements(spec.shape);
      if (data.length !== expected)
        throw new Error(`writeSafetensors: tensor "${spec.name}" [${spec.shape.join(', ')}] needs ${expected} values, got ${data.length}`);
      position = await writeFully(handle, encode(data, spec.dtype), position);
    }
  } finally {
    await handle.close();
  }
  return 8 + headerBytes.length + offset;
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(bytes.byteLength - done, MAX_READ_BYTES), position + done);
    done += bytesWritten;
  }
  return position + done;
}

function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
