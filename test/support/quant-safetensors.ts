// Writes safetensors files from raw little-endian bytes of any dtype (I32 packed words, I64 shapes, F16
// scales): what 4-bit checkpoints hold and the float-only writer in safetensors-writer.ts cannot express.
import { writeFile } from 'node:fs/promises';
import { BYTES_PER_ELEMENT } from '../../src/checkpoint/safetensors.js';

export interface RawTensor {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'I8' | 'U8' | 'F64';
  shape: number[];
  bytes: Uint8Array;
}

export async function writeRawSafetensors(path: string, tensors: readonly RawTensor[]): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    const expected = t.shape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[t.dtype]!;
    if (t.bytes.byteLength !== expected)
      throw new Error(`writeRawSafetensors: "${t.name}" ${t.dtype}[${t.shape}] needs ${expected} bytes, got ${t.bytes.byteLength}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);
  const headerBytes = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length));
  headerBytes.copy(out, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors) {
    out.set(t.bytes, at);
    at += t.bytes.byteLength;
  }
  await writeFile(path, out);
}
