#!/usr/bin/env node
// Entry point: `node dist/cli.js <command>`. Parses argv into typed options and hands off; the
// commands themselves live in src/cli/.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { runDevices } from './cli/devices.js';

await yargs(hideBin(process.argv))
  .scriptName('webgpu-llm')
  .usage('$0 <command> [options]')
  .command(
    'devices',
    'list GPU adapters with the limits and features that matter for LLMs',
    (y) => y.option('json', { type: 'boolean', default: false, describe: 'machine-readable output' }),
    async (argv) => runDevices({ json: argv.json }),
  )
  .demandCommand(1, 'name a command; see --help')
  .strict()
  .fail((msg, err, y) => {
    if (err) {
      process.stderr.write(`error: ${err.message}\n`);
    } else {
      process.stderr.write(`${y.help()}\n\n${msg}\n`);
    }
    process.exit(1);
  })
  .help()
  .parseAsync();

// Dawn keeps the event loop alive; commands that finish their work end the process.
process.exit(process.exitCode ?? 0);
