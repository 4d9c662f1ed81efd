// Child processes that run one of our own modules (shard workers, the adapter probe): the module's
// path next to the caller, as .ts under tsx (tests, benches) or .js in dist/, and the Node flags
// that load it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

export interface ChildEntry {
  path: string;
  execArgv: string[];
}

/** `name` (no extension), relative to the module whose import.meta.url is `callerUrl`. */
export function childEntry(callerUrl: string, name: string): ChildEntry {
  const caller = fileURLToPath(callerUrl);
  const ts = caller.endsWith('.ts');
  const path = join(dirname(caller), `${name}.${ts ? 'ts' : 'js'}`);
  if (!existsSync(path)) throw new Error(`${path} is missing; rebuild with \`npm run build\``);
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--inspect'));
  if (ts && !execArgv.some((a) => a.includes('tsx'))) {
    execArgv.push('--import', pathToFileURL(createRequire(callerUrl).resolve('tsx')).href);
  }
  return { path, execArgv };
}
