#!/usr/bin/env node
// Entry point: `node dist/cli.js <command>`. Parses argv into typed options and hands off; the
// commands themselves live in src/cli/.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { runDevices } from './cli/devices.js';
import { withEngineOptions } from './cli/engine-options.js';
import { REASONING_PARSERS } from './server/reasoning/parser.js';
import { TOOL_CALL_PARSER_CHOICES } from './server/tools/parsers.js';
import { runWithFilteredStderr } from './cli/stderr-filter.js';

// Below --log-level debug, the commands run in a child whose stderr is filtered of Dawn's native noise.
await runWithFilteredStderr();

function withSampling<T>(y: import('yargs').Argv<T>) {
  return y
    .option('max-tokens', { type: 'number', default: 256, describe: 'max tokens to generate' })
    .option('temperature', { type: 'number', describe: '0 = greedy (default: generation_config.json, greedy unless do_sample)' })
    .option('top-p', { type: 'number' })
    .option('top-k', { type: 'number' })
    .option('min-p', { type: 'number' })
    .option('repetition-penalty', { type: 'number' })
    .option('seed', { type: 'number', describe: 'RNG seed for reproducible sampling' });
}

await yargs(hideBin(process.argv))
  .scriptName('webgpu-llm')
  .usage('$0 <command> [options]')
  .command(
    'devices',
    'list GPU adapters with the limits and features that matter for LLMs',
    (y) => y.option('json', { type: 'boolean', default: false, describe: 'machine-readable output' }),
    async (argv) => runDevices({ json: argv.json }),
  )
  .command(
    'serve <model>',
    "serve the OpenAI-compatible API (and LMDeploy's /v1/chat/interactive)",
    (y) =>
      withEngineOptions(y)
        .option('server-name', { type: 'string', default: '0.0.0.0', describe: 'address to listen on' })
        .option('server-port', { type: 'number', default: 23333 })
        .option('model-name', { type: 'string', describe: 'the name clients use in "model" (default: the model id or folder name)' })
        .option('api-keys', { type: 'string', array: true, default: [] as string[], describe: 'accepted bearer keys; none = no auth' })
        .option('allow-origins', { type: 'string', array: true, default: [] as string[], describe: 'CORS origins ("*" for any)' })
        .option('max-sessions', { type: 'number', default: 256, describe: 'max live /v1/chat/interactive sessions' })
        .option('session-idle-seconds', { type: 'number', default: 1800, describe: 'interactive sessions idle this long are ended' })
        .option('max-body-size', { type: 'string', default: '1MiB', describe: 'largest request body, e.g. 1MiB or 4MB; larger ones get 413' })
        .option('generation-config', {
          choices: ['auto', 'vllm'] as const,
          default: 'auto' as const,
          describe:
            "auto: generation_config.json's temperature/top_p/top_k/min_p/repetition_penalty are the defaults of requests that omit them; vllm: ignore them",
        })
        .option('reasoning-parser', {
          choices: REASONING_PARSERS,
          describe:
            'split <think>...</think> of chat answers into reasoning_content (deepseek_r1: output starts inside the reasoning; qwen3: only if it starts with <think>)',
        })
        .option('tool-call-parser', {
          choices: TOOL_CALL_PARSER_CHOICES,
          describe:
            "how tool calls are read from chat answers with tool_choice auto (vLLM's names; LMDeploy's qwen, qwen2d5, qwen3, llama3 are aliases); default: chosen from the model's chat template and architecture",
        })
        .option('warmup', {
          type: 'boolean',
          default: true,
          describe: 'run throwaway requests at start so GPU pipelines are compiled before /health reports ready (--no-warmup to skip)',
        }),
    async (argv) => {
      const { runServe } = await import('./cli/serve.js');
      await runServe({ ...argv, model: argv.model as string });
    },
  )
  .command(
    'generate <model>',
    'generate text for one prompt, streamed to stdout',
    (y) =>
      withSampling(withEngineOptions(y))
        .option('prompt', { type: 'string', default: '', describe: 'the prompt; empty starts from BOS alone' })
        .option('chat', { type: 'boolean', default: false, describe: 'wrap the prompt in the chat template as a user message' })
        .option('ignore-eos', { type: 'boolean', default: false }),
    async (argv) => {
      const { runGenerate } = await import('./cli/generate.js');
      await runGenerate({ ...argv, model: argv.model as string });
    },
  )
  .command(
    'chat <model>',
    'chat with the model in the terminal (streaming)',
    (y) => withSampling(withEngineOptions(y)).option('system', { type: 'string', describe: 'system prompt' }),
    async (argv) => {
      const { runChat } = await import('./cli/chat.js');
      await runChat({ ...argv, model: argv.model as string });
    },
  )
  .command(
    'quantize <model>',
    'write a 4-bit AutoAWQ-format copy of a model (AWQ or round-to-nearest) that this server, vLLM and LMDeploy load',
    (y) =>
      y
        .positional('model', { type: 'string', demandOption: true, describe: 'model folder (config.json, *.safetensors, tokenizer.json) or a Hugging Face id' })
        .option('revision', { type: 'string', default: 'main', describe: 'Hugging Face revision when <model> is an id' })
        .option('out', { type: 'string', demandOption: true, describe: 'output folder (created; must be empty)' })
        .option('method', {
          choices: ['awq', 'rtn'] as const,
          default: 'awq' as const,
          describe: 'awq: activation-aware scales from calibration text; rtn: plain round-to-nearest',
        })
        .option('group-size', { type: 'number', default: 128, describe: 'input channels per scale and zero point (32, 64 or 128)' })
        .option('calib-data', { type: 'string', describe: 'awq: a UTF-8 text file to calibrate on (default: a built-in English text)' })
        .option('calib-samples', { type: 'number', describe: 'awq: calibration sequences (default 4)' })
        .option('calib-seqlen', { type: 'number', describe: 'awq: tokens per calibration sequence (default 128)' })
        .option('duo-scaling', {
          type: 'boolean',
          describe: "awq: AutoAWQ's duo_scaling, scales from activation and weight magnitudes (default true; --no-duo-scaling: activations alone)",
        })
        .option('device', { type: 'number', describe: 'awq: adapter index to run the calibration on (see `devices`; default 0)' })
        .option('log-level', { choices: ['debug', 'info', 'warn', 'error'] as const, describe: 'stderr log level' }),
    async (argv) => {
      const { runQuantize } = await import('./cli/quantize.js');
      await runQuantize({ ...argv, model: argv.model as string });
    },
  )
  .command(
    'api_client <url>',
    'interactive terminal client for a running server (or one-shot with --prompt)',
    (y) =>
      y
        .positional('url', { type: 'string', demandOption: true })
        .option('prompt', { type: 'string', describe: 'send one message, print the answer and exit' })
        .option('api-key', { type: 'string' })
        .option('model', { type: 'string', describe: 'model name (default: the first of /v1/models)' })
        .option('max-tokens', { type: 'number', default: 256 })
        .option('temperature', { type: 'number' }),
    async (argv) => {
      const { runApiClient } = await import('./cli/api-client.js');
      await runApiClient({ ...argv, url: argv.url as string });
    },
  )
  .command(
    'webui <api_url>',
    'serve the chat page (/chat) for a server running elsewhere, like `lmdeploy serve gradio`',
    (y) =>
      y
        .positional('api_url', { type: 'string', demandOption: true, describe: 'the API server, e.g. http://127.0.0.1:23333' })
        .option('server-name', { type: 'string', default: '0.0.0.0', describe: 'address to listen on' })
        .option('server-port', { type: 'number', default: 6006, describe: 'port of the chat page' }),
    async (argv) => {
      const { runWebui } = await import('./cli/webui.js');
      await runWebui({ apiUrl: argv.api_url as string, serverName: argv.serverName, serverPort: argv.serverPort });
    },
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
