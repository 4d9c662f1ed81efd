// Errors the GPU layer raises. Each names what failed and, where possible, what to do about it.

export class GpuError extends Error {
  constructor(
    message: string,
    readonly kernel?: string,
  ) {
    super(message);
    this.name = 'GpuError';
  }
}

export class NoGpuAdapterError extends GpuError {
  constructor(detail = '') {
    super(
      'no Vulkan driver found: run scripts/install-software-gpu.sh (CPU-only machines) or install your ' +
        "GPU vendor's Vulkan driver, then check with `node dist/cli.js devices`" +
        (detail ? ` (${detail})` : ''),
    );
    this.name = 'NoGpuAdapterError';
  }
}

export class DeviceLostError extends GpuError {
  constructor(label: string, reason: string, message: string) {
    super(`GPU device ${label} was lost (${reason}): ${message}`);
    this.name = 'DeviceLostError';
  }
}

/** Turns WGSL compilation messages into one readable error naming the kernel and the WGSL line. */
export function describeCompilationErrors(kernel: string, code: string, messages: readonly GPUCompilationMessage[]): string | null {
  const errors = messages.filter((m) => m.type === 'error');
  if (errors.length === 0) return null;
  const lines = code.split('\n');
  const parts = errors.map((m) => {
    const src = m.lineNum > 0 ? (lines[m.lineNum - 1]?.trim() ?? '') : '';
    return `  ${kernel}.wgsl:${m.lineNum}:${m.linePos}: ${m.message}${src ? `\n    ${src}` : ''}`;
  });
  return `WGSL compilation failed for kernel "${kernel}":\n${parts.join('\n')}`;
}
