// Compute pipelines cached by shader source, entry point and override constants. Compilation
// errors are thrown with the kernel's name and the WGSL line they point at.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeCompilationErrors, GpuError } from './errors.js';

export type OverrideConstants = Record<string, number>;

export interface PipelineSpec {
  /** Kernel name: labels the pipeline so GPU errors can name it. */
  kernel: string;
  /** WGSL source. Use loadShader() for files in shaders/. */
  code: string;
  entryPoint?: string;
  constants?: OverrideConstants;
}

export class PipelineCache {
  private readonly cache = new Map<string, Promise<GPUComputePipeline>>();
  private readonly modules = new Map<string, GPUShaderModule>();

  constructor(
    private readonly device: GPUDevice,
    private readonly features: ReadonlySet<string>,
  ) {}

  /** The compiled pipeline for spec; concurrent callers share one compilation. */
  get(spec: PipelineSpec): Promise<GPUComputePipeline> {
    const constants = spec.constants ?? {};
    const key = JSON.stringify([spec.code, spec.entryPoint ?? 'main', Object.entries(constants).sort()]);
    let pipeline = this.cache.get(key);
    if (!pipeline) {
      pipeline = this.compile(spec, constants);
      pipeline.catch(() => this.cache.delete(key));
      this.cache.set(key, pipeline);
    }
    return pipeline;
  }

  private async compile(spec: PipelineSpec, constants: OverrideConstants): Promise<GPUComputePipeline> {
    const code = withEnables(spec.code, this.features);
    let module = this.modules.get(code);
    if (!module) {
      this.device.pushErrorScope('validation');
      module = this.device.createShaderModule({ label: spec.kernel, code });
      const info = await module.getCompilationInfo();
      const scoped = await this.device.popErrorScope();
      const message = describeCompilationErrors(spec.kernel, code, info.messages);
      if (message) throw new GpuError(message, spec.kernel);
      if (scoped) throw new GpuError(`shader module for kernel "${spec.kernel}" is invalid: ${scoped.message}`, spec.kernel);
      this.modules.set(code, module);
    }
    this.device.pushErrorScope('validation');
    const pipeline = this.device.createComputePipeline({
      label: spec.kernel,
      layout: 'auto',
      compute: { module, entryPoint: spec.entryPoint ?? 'main', constants },
    });
    const error = await this.device.popErrorScope();
    if (error) throw new GpuError(`pipeline for kernel "${spec.kernel}" is invalid: ${error.message}`, spec.kernel);
    return pipeline;
  }
}

/**
 * How WGSL code declares the language extensions it needs: a comment line `// requires: <names>`, names
 * separated by `|`, `,` or spaces, out of WGSL_EXTENSIONS (`// requires: f16`, `// requires: f16|subgroups`).
 * It may stand anywhere: in a file's header or at the top of the `//#section` that needs it, so that it
 * travels with the section into whichever variant loadShaderSections assembles. This is the only way:
 * shaders hold no `enable` lines and kernels prepend nothing; PipelineCache adds one line of `enable`
 * directives in front of the module after checking that the device has each feature.
 */
const WGSL_EXTENSIONS: Record<string, string> = { f16: 'shader-f16', subgroups: 'subgroups' };

/** `code` behind the `enable` directives its `// requires:` lines ask for. */
function withEnables(code: string, features: ReadonlySet<string>): string {
  const required = new Set<string>();
  for (const [, names] of code.matchAll(/^\s*\/\/\s*requires:(.*)$/gm)) {
    for (const name of names!.split(/[|,\s]+/).filter(Boolean)) {
      if (!(name in WGSL_EXTENSIONS)) {
        throw new GpuError(`"// requires: ${name}": unknown; a shader may require ${Object.keys(WGSL_EXTENSIONS).join(', ')}`);
      }
      required.add(name);
    }
  }
  const enables: string[] = [];
  for (const [name, feature] of Object.entries(WGSL_EXTENSIONS)) {
    if (!required.has(name)) continue;
    if (!features.has(feature)) throw new GpuError(`this kernel needs the ${feature} feature, which the device lacks`);
    enables.push(`enable ${name};`);
  }
  return enables.length ? `${enables.join(' ')}\n${code}` : code;
}

const shaderCache = new Map<string, string>();

/**
 * Reads <dir>/<name>.wgsl, by default from the project's shaders/ (works from src/ under tsx and from
 * dist/). Tests and benches pass their own folder for the shaders only they use.
 */
export function loadShader(name: string, dir: string = shaderDir()): string {
  const path = join(dir, `${name}.wgsl`);
  let code = shaderCache.get(path);
  if (code === undefined) {
    code = readFileSync(path, 'utf8');
    shaderCache.set(path, code);
  }
  return code;
}

export function shaderDir(): string {
  // src/gpu/pipelines.ts and dist/gpu/pipelines.js both sit two levels below the project root.
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shaders');
}

/**
 * Joins the named `//#section <name>` parts of shaders/<file>.wgsl, in the order given (text before
 * the first section is the file's header comment, left out). The one way to build shader variants: one
 * file holds a kernel family whose variants (weight storage, reduction style, native f16 or packed) are
 * assembled per device by choosing sections; a section that needs f16 or subgroups says so with its own
 * `// requires:` line (see withEnables), so choosing it is all a kernel does.
 */
export function loadShaderSections(file: string, names: readonly string[], dir: string = shaderDir()): string {
  const parts = loadShader(file, dir).split(/^\/\/#section +(\S+) *$/m);
  const sections = new Map<string, string>();
  for (let i = 1; i + 1 < parts.length; i += 2) sections.set(parts[i]!, parts[i + 1]!);
  return names
    .map((name) => {
      const text = sections.get(name);
      if (text === undefined) throw new Error(`${join(dir, file)}.wgsl has no section "${name}"`);
      return text;
    })
    .join('\n');
}
