// out = a + b over f32 vectors (residual adds outside fused paths).
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../../src/gpu/index.js';
import { TEST_SHADER_DIR } from './shaders.js';

export class ElementwiseKernels {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly addPipeline: GPUComputePipeline,
  ) {}

  static async create(gpu: GpuDevice): Promise<ElementwiseKernels> {
    const code = loadShader('elementwise', TEST_SHADER_DIR);
    const add = await gpu.pipelines.get({ kernel: 'elementwise.add', code, entryPoint: 'add' });
    return new ElementwiseKernels(gpu, add);
  }

  /** out[i] = a[i] + b[i] for i < n. */
  add(pass: GPUComputePassEncoder, uniforms: UniformArena, a: Binding, b: Binding, out: Binding, n: number): void {
    const params = uniforms.alloc(new Uint32Array([n, 0, 0, 0]));
    dispatch(this.gpu.device, pass, this.addPipeline, [a, b, out, params], grid1d(Math.ceil(n / 256)));
  }
}
