// The folder of the WGSL files that only benches use (loadShader(name, BENCH_SHADER_DIR)).
import { fileURLToPath } from 'node:url';

export const BENCH_SHADER_DIR = fileURLToPath(new URL('./shaders', import.meta.url));
