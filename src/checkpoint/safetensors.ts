// Safetensors reading without loading whole files: parse each file's header (8-byte little-endian length +
// JSON), then read one tensor's byte range at a time with FileHandle.read at its offset. Offsets are plain
// numbers (exact below 2^53), so files over 4 GB work. Also the f32 <-> f16/bf16 conversions, and raw
// integer reads for the packed words, zero points and shapes of 4-bit checkpoints (AWQ, GPTQ, compressed-tensors).
import { open, readdir, readFile, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';
/** Integer dtypes read as they are stored (readInt): packed 4-bit words (I32), shapes (I64), zero points (I8/U8). */
export type IntegerDtype = 'I32' | 'I64' | 'I8' | 'U8';

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype | IntegerDtype;
  shape: number[];
  /** Absolute path of the file holding the tensor. */
  file: string;
  /** Absolute byte offset of the tensor's data in `file`. */
  byteOffset: number;
  byteLength: number;
}

export const BYTES_PER_ELEMENT: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};
const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);
const INTEGER_DTYPES: ReadonlySet<string> = new Set(['I32', 'I64', 'I8', 'U8']);
/** Real headers are well under 1 MB; a bigger "length" means this is not a safetensors file. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** Node rejects single reads of 2 GiB or more. */
export const MAX_READ_BYTES = 1 << 30;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('safetensors.ts assumes a little-endian host');

export class SafetensorsReader {
  /** Bytes of tensor data read so far (headers excluded): lets tests check that a read touches only its tensor. */
  numTensorBytesRead = 0;

  private constructor(
    readonly modelDir: string,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    private readonly unsupportedDtypeByName: ReadonlyMap<string, string>,
    private readonly handleByFile: Map<string, FileHandle>,
  ) {}

  /** Opens model.safetensors.index.json (sharded) or else model.safetensors in `modelDir`. */
  static async open(modelDir: string): Promise<SafetensorsReader> {
    const files = await listSafetensorsFiles(modelDir);
    const handleByFile = new Map<string, FileHandle>();
    const tensors = new Map<string, TensorInfo>();
    const unsupported = new Map<string, string>();
    try {
      for (const file of files.paths) {
        const handle = await open(file, 'r');
        handleByFile.set(file, handle);
        for (const entry of await parseHeader(handle, file)) {
          if (tensors.has(entry.name) || unsupported.has(entry.name)) {
            throw new Error(`tensor "${entry.name}" appears in more than one safetensors file (second: ${file})`);
          }
          if (FLOAT_DTYPES.has(entry.dtype) || INTEGER_DTYPES.has(entry.dtype)) tensors.set(entry.name, entry as TensorInfo);
          else unsupported.set(entry.name, entry.dtype);
        }
      }
      if (files.fileByName) checkIndexAgainstHeaders(files.fileByName, tensors, unsupported, modelDir);
    } catch (err) {
      await Promise.all([...handleByFile.values()].map((h) => h.close()));
      throw err;
    }
    return new SafetensorsReader(modelDir, tensors, unsupported, handleByFile);
  }

  has(name: string): boolean {
    return this.tensors.has(name) || this.unsupportedDtypeByName.has(name);
  }

  /** Reads one tensor converted to f32, or to f16 bits (Uint16Array; BF16 goes through f32 with RNE rounding). */
  async read(name: string, as: 'f32'): Promise<Float32Array>;
  async read(name: string, as: 'f16'): Promise<Uint16Array>;
  async read(name: string, as: 'f32' | 'f16'): Promise<Float32Array | Uint16Array>;
  async read(name: string, as: 'f32' | 'f16'): Promise<Float32Array | Uint16Array> {
    const info = this.info(name);
    if (!FLOAT_DTYPES.has(info.dtype)) throw new Error(`tensor "${name}" has dtype ${info.dtype}, not a float; it holds integers (readInt)`);
    const dtype = info.dtype as SafetensorsDtype;
    const bytes = await this.readBytes(info);
    return as === 'f32' ? bytesToF32(bytes, dtype) : bytesToF16(bytes, dtype);
  }

  /**
   * Reads an integer tensor as stored: I32 as Int32Array (bit patterns intact, so packed words survive),
   * I8 as Int8Array, U8 as Uint8Array, I64 as BigInt64Array. Throws naming the tensor for any other dtype.
   */
  async readInt(name: string): Promise<Int32Array | BigInt64Array | Int8Array | Uint8Array> {
    const info = this.info(name);
    const bytes = await this.readBytes(info);
    switch (info.dtype) {
      case 'I32':
        return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      case 'I64':
        return new BigInt64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
      case 'I8':
        return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      case 'U8':
        return bytes;
      default:
        throw new Error(`tensor "${name}" has dtype ${info.dtype}; an integer tensor (I32, I64, I8 or U8) was expected`);
    }
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info) return info;
    const dtype = this.unsupportedDtypeByName.get(name);
    if (dtype !== undefined) {
      throw new Error(`tensor "${name}" has dtype ${dtype}; supported: F32, F16, BF16 and, for 4-bit checkpoints' integer tensors, I32, I64, I8, U8`);
    }
    throw new Error(`tensor "${name}" is not in the safetensors files of ${this.modelDir}`);
  }

  async close(): Promise<void> {
    const handles = [...this.handleByFile.values()];
    this.handleByFile.clear();
    await Promise.all(handles.map((h) => h.close()));
  }

  private async readBytes(info: TensorInfo): Promise<Uint8Array> {
    const handle = this.handleByFile.get(info.file);
    if (!handle) throw new Error(`SafetensorsReader for ${this.modelDir} is closed`);
    // A fresh ArrayBuffer (not Buffer's shared pool) keeps the data 4-byte aligned for Float32Array views.
    const bytes = new Uint8Array(new ArrayBuffer(info.byteLength));
    await readFully(handle, bytes, info.byteOffset, info.file);
    this.numTensorBytesRead += info.byteLength;
    return bytes;
  }
}

async function listSafetensorsFiles(modelDir: string): Promise<{ paths: string[]; fileByName?: Map<string, string> }> {
  const indexPath = join(modelDir, 'model.safetensors.index.json');
  let indexText: string | undefined;
  try {
    indexText = await readFile(indexPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (indexText === undefined) {
    const single = join(modelDir, 'model.safetensors');
    try {
      await (await open(single, 'r')).close();
      return { paths: [single] };
    } catch {
      // AutoGPTQ-era repos name their one file after the quantization (gptq_model-4bit-128g.safetensors).
      const others = (await readdir(modelDir)).filter((f) => f.endsWith('.safetensors')).sort();
      if (others.length === 1) return { paths: [join(modelDir, others[0]!)] };
      const found = others.length ? ` (found ${others.join(', ')} without an index to say which holds what)` : '';
      throw new Error(`no model.safetensors or model.safetensors.index.json in ${modelDir}${found}: the model must be in Hugging Face safetensors format`);
    }
  }
  let index: unknown;
  try {
    index = JSON.parse(indexText);
  } catch (err) {
    throw new Error(`${indexPath} is not valid JSON: ${(err as Error).message}`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (weightMap === null || typeof weightMap !== 'object') throw new Error(`${indexPath} has no weight_map object`);
  const fileByName = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof file !== 'string' || basename(file) !== file)
      throw new Error(`${indexPath}: weight_map["${name}"] must be a file name, got ${JSON.stringify(file)}`);
    fileByName.set(name, join(modelDir, file));
  }
  return { paths: [...new Set(fileByName.values())], fileByName };
}

function checkIndexAgainstHeaders(fileByName: Map<string, string>, tensors: Map<string, TensorInfo>, unsupported: Map<string, string>, modelDir: string): void {
  for (const [name, file] of fileByName) {
    const info = tensors.get(name);
    if (!info && !unsupported.has(name))
      throw new Error(`model.safetensors.index.json in ${modelDir} maps "${name}" to ${basename(file)}, but that file has no such tensor`);
    if (info && info.file !== file) throw new Error(`model.safetensors.index.json maps "${name}" to ${basename(file)}, but it is in ${basename(info.file)}`);
  }
}

interface HeaderEntry extends Omit<TensorInfo, 'dtype'> {
  dtype: string;
}

async function parseHeader(handle: FileHandle, file: string): Promise<HeaderEntry[]> {
  const fileSize = (await handle.stat()).size;
  const notSafetensors = (why: string) => new Error(`${file} is not a valid safetensors file: ${why}`);
  if (fileSize < 8) throw notSafetensors(`only ${fileSize} bytes`);
  const lengthBytes = new Uint8Array(8);
  await readFully(handle, lengthBytes, 0, file);
  const headerLength = Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
    throw notSafetensors(`header length ${headerLength} does not fit in the file (${fileSize} bytes); is it truncated?`);
  }
  const headerBytes = new Uint8Array(headerLength);
  await readFully(handle, headerBytes, 8, file);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch (err) {
    throw notSafetensors(`header is not JSON (${(err as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw notSafetensors('header is not a JSON object');
  const dataStart = 8 + headerLength;
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: offsets } = (raw ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !(dtype in BYTES_PER_ELEMENT)) throw notSafetensors(`tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      throw notSafetensors(`tensor "${name}" has a bad shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
      throw notSafetensors(`tensor "${name}" has bad data_offsets ${JSON.stringify(offsets)}`);
    }
    const numElements = (shape as number[]).reduce((a, b) => a * b, 1);
    const byteLength = offsets[1] - offsets[0];
    if (byteLength !== numElements * BYTES_PER_ELEMENT[dtype]!) {
      throw notSafetensors(
        `tensor "${name}" ${dtype}[${shape.join(', ')}] needs ${numElements * BYTES_PER_ELEMENT[dtype]!} bytes but data_offsets span ${byteLength}`,
      );
    }
    if (dataStart + offsets[1] > fileSize)
      throw notSafetensors(`tensor "${name}" ends at byte ${dataStart + offsets[1]}, past the end of the file (${fileSize}); is it truncated?`);
    entries.push({ name, dtype, shape: shape as number[], file, byteOffset: dataStart + offsets[0], byteLength });
  }
  return entries;
}

async function readFully(handle: FileHandle, into: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const length = Math.min(into.byteLength - done, MAX_READ_BYTES);
    const { bytesRead } = await handle.read(into, done, length, position + done);
    if (bytesRead === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

// ---- dtype conversions -------------------------------------------------------------------------------

export { f16BitsToF32, f32BitsToF16Bits, f32ToF16Bits, f32ToBf16Bits, bf16BitsToF32 } from '../common/half.js';
import { f16BitsToF32, f32ToF16Bits, bf16BitsToF32 } from '../common/half.js';

function bytesToF32(bytes: Uint8Array, dtype: SafetensorsDtype): Float32Array {
  if (dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return dtype === 'F16' ? f16BitsToF32(halves) : bf16BitsToF32(halves);
}

function bytesToF16(bytes: Uint8Array, dtype: SafetensorsDtype): Uint16Array {
  if (dtype === 'F16') return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return f32ToF16Bits(bytesToF32(bytes, dtype));
}
