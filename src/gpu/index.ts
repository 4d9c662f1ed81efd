export { getGpu } from './dawn.js';
export { GpuError, NoGpuAdapterError, DeviceLostError } from './errors.js';
export { enumerateAdapters, describeAdapter, requestAdapter, type AdapterDescription, WANTED_FEATURES } from './adapters.js';
export { GpuDevice, openDevices, openDevice, openDefaultDevice, describeOpened, align } from './device.js';
export { PipelineCache, loadShader, loadShaderSections, shaderDir, type PipelineSpec, type OverrideConstants } from './pipelines.js';
export { BufferPool, storageUsage } from './buffers.js';
export { UniformArena, dispatch, grid1d, type Binding } from './dispatch.js';
export { WaitPacer, tokenBucket, type WaitPacerOptions } from './wait-pacer.js';
