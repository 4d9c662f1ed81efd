// How a model runner is built: memory budget, batch shape, dtype.
import type { MemoryOptions } from './memory.js';

export interface RunnerOptions extends MemoryOptions {
  dtype: 'f16' | 'f32';
  blockSize: number;
  maxNumSeqs: number;
  maxModelLen: number;
  /** Print a progress bar / summary while loading. */
  progress?: boolean;
}
