// The folder of the WGSL files that only tests use (loadShader(name, TEST_SHADER_DIR)).
import { fileURLToPath } from 'node:url';

export const TEST_SHADER_DIR = fileURLToPath(new URL('./shaders', import.meta.url));
