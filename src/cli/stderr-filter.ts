// Dawn's native code writes a few warnings straight to fd 2 while it enumerates adapters (on lavapipe:
// "Warning: maxDynamic...PerPipelineLayout artificially reduced from 1000000 to 16 ..."), on every
// command. dawn.node has no flag, toggle or log callback that reaches them, and Node cannot redirect
// its own fd 2 (no dup2) around requestAdapter. So below --log-level debug the CLI runs itself as a
// child whose stderr is a pipe: this parent drops those exact lines (src/gpu/dawn-noise.ts) and copies
// everything else through as it arrives. With --log-level debug (or LOG_LEVEL=debug) there is no child
// and Dawn's lines appear as they are.
//
// The parent forwards SIGTERM and SIGHUP, turns SIGINT into SIGTERM (a terminal's Ctrl-C reaches the
// child directly as well; `serve` drains once either way), and exits with the child's code or signal.
// The child ends itself if the parent disappears (SIGKILL). A stderr that is a terminal stays one for
// the child's log and progress bars (WEBGPU_LLM_STDERR_TTY).
import { spawn } from 'node:child_process';
import { LineFilter } from '../gpu/dawn-noise.js';

const CHILD_ENV = 'WEBGPU_LLM_STDERR_FILTERED';
const TTY_ENV = 'WEBGPU_LLM_STDERR_TTY';

/** Whether argv or LOG_LEVEL asks for debug logging: then Dawn's own lines are shown. */
export function wantsDebug(argv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--log-level') return argv[i + 1] === 'debug';
    if (argv[i]!.startsWith('--log-level=')) return argv[i] === '--log-level=debug';
  }
  return env.LOG_LEVEL === 'debug';
}

/**
 * In the parent: starts the filtered child and never resolves (the process exits with the child).
 * In the child, at debug level, or with WEBGPU_LLM_RAW_STDERR=1: returns at once and the CLI runs here.
 */
export async function runWithFilteredStderr(): Promise<void> {
  if (process.env[CHILD_ENV] === '1') {
    becomeChild();
    return;
  }
  if (process.env.WEBGPU_LLM_RAW_STDERR === '1' || wantsDebug(process.argv.slice(2), process.env)) return;
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'pipe'],
    env: { ...process.env, [CHILD_ENV]: '1', ...(process.stderr.isTTY ? { [TTY_ENV]: '1' } : {}) },
  });
  const filter = new LineFilter((text) => process.stderr.write(text));
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => filter.push(text));
  const forward = (signal: NodeJS.Signals) => () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const handlers: Array<[NodeJS.Signals, () => void]> = [
    ['SIGTERM', forward('SIGTERM')],
    ['SIGHUP', forward('SIGHUP')],
    ['SIGINT', forward('SIGTERM')],
  ];
  for (const [signal, handler] of handlers) process.on(signal, handler);
  await new Promise<never>(() => {
    child.on('error', (err) => {
      process.stderr.write(`could not start the CLI: ${err.message}\n`);
      process.exit(1);
    });
    let finished = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (finished) return;
      finished = true;
      filter.end();
      for (const [sig, handler] of handlers) process.off(sig, handler);
      if (signal) process.kill(process.pid, signal);
      else process.exit(code ?? 1);
    };
    // 'close' comes once the child exited and its stderr is drained; a grandchild that still holds
    // the pipe open (a shard worker on its way out) gets two seconds.
    child.on('close', finish);
    child.on('exit', (code, signal) => setTimeout(() => finish(code, signal), 2000));
  });
}

function becomeChild(): void {
  // Our stderr is the parent's pipe; it stands for the parent's terminal, when that is one.
  if (process.env[TTY_ENV] === '1') (process.stderr as { isTTY?: boolean }).isTTY = true;
  // Orphaned (the parent was killed outright): end like on SIGTERM rather than run on unseen.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
  }, 1000).unref();
  // Children of this process (shard workers) need no filter of their own: they inherit this stderr.
  delete process.env[CHILD_ENV];
  delete process.env[TTY_ENV];
}
