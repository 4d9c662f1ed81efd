// The safetensors writer for tests and benches (synthetic checkpoints): src/checkpoint/safetensors-writer.ts
// with f32 data converted to each tensor's float dtype here.
import { f32ToBf16Bits, f32ToF16Bits } from '../../src/common/half.js';
import type { SafetensorsDtype } from '../../src/checkpoint/safetensors.js';
import { writeSafetensorsFile } from '../../src/checkpoint/safetensors-writer.js';

function encode(data: Float32Array, dtype: SafetensorsDtype): Float32Array | Uint16Array {
  return dtype === 'F32' ? data : dtype === 'F16' ? f32ToF16Bits(data) : f32ToBf16Bits(data);
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
  return writeSafetensorsFile(
    path,
    specs,
    async (spec, i) => {
      const s = specs[i]!;
      const data = await produce(s, i);
      const expected = s.shape.reduce((a, b) => a * b, 1);
      if (data.length !== expected)
        throw new Error(`writeSafetensors: tensor "${spec.name}" [${spec.shape.join(', ')}] needs ${expected} values, got ${data.length}`);
      return encode(data, s.dtype);
    },
    metadata,
  );
}
