// What a kernel benchmark case is: bench/kernels.ts runs them, bench/*-cases.ts build them.
import type { GpuDevice } from '../src/gpu/index.js';
import type { MatmulKernels } from '../src/kernels/matmul.js';
import type { RecordFn } from './common.js';

/** What a case hands the runner once its buffers exist. */
export interface PreparedCase {
  record: RecordFn;
  /** Bytes the kernel has to read at least once (weights + activations), for GB/s. */
  bytes: number;
  flops: number;
  /** Buffers (and byte counts) the streaming-read baseline reads for comparison; usually the weights. */
  streamed: { buffer: GPUBuffer; bytes: number }[];
  destroy(): void;
}

export interface KernelCase {
  /** Table the row goes into, e.g. "matmul". */
  group: string;
  name: string;
  /** Timed runs (median reported); heavy cases use fewer. */
  samples?: number;
  setup(gpu: GpuDevice, shared: SharedKernels): Promise<PreparedCase>;
}

export interface SharedKernels {
  matmul: MatmulKernels;
}
