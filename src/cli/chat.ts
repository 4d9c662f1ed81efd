// `chat`: a terminal chat with the model through its chat template, streaming each answer.
import { createInterface } from 'node:readline/promises';
import { Engine } from '../engine/engine.js';
import { setLogLevel } from '../common/log.js';
import { chatPromptTokenIds } from '../engine/prompt.js';
import type { ChatMessage } from '../common/types.js';
import { resolveModel } from '../hub/hub.js';
import { toEngineOptions, type EngineArgs } from './engine-options.js';
import { cliSampling, type GenerateArgs } from './generate.js';

export type ChatArgs = EngineArgs &
  Pick<GenerateArgs, 'logLevel' | 'maxTokens' | 'temperature' | 'topP' | 'topK' | 'minP' | 'repetitionPenalty' | 'seed'> & { system?: string };

export async function runChat(args: ChatArgs): Promise<void> {
  if (args.logLevel) setLogLevel(args.logLevel);
  const modelDir = await resolveModel(args.model, { revision: args.revision, progress: true });
  const engine = await Engine.create(await toEngineOptions(args, modelDir, { progress: true }));
  const history: ChatMessage[] = args.system ? [{ role: 'system', content: args.system }] : [];
  const rl = createInterface({ input: process.stdin, terminal: process.stdin.isTTY });
  process.stderr.write(`[chat] ${engine.modelName} ready; an empty line or Ctrl-D ends, /reset clears the history\n`);
  try {
    process.stdout.write('> ');
    // Iterating the interface buffers lines that arrive while an answer streams (question() drops them).
    for await (const line of rl) {
      if (line.trim() === '') break;
      if (line.trim() === '/reset') {
        history.length = args.system ? 1 : 0;
        process.stdout.write('> ');
        continue;
      }
      history.push({ role: 'user', content: line });
      let answer = '';
      for await (const delta of engine.generate({
        promptTokenIds: chatPromptTokenIds(engine.codec, history),
        sampling: await cliSampling(modelDir, args),
        maxTokens: args.maxTokens,
        stop: [],
        stopTokenIds: [],
        ignoreEos: false,
        skipSpecialTokens: true,
      })) {
        answer += delta.text;
        process.stdout.write(delta.text);
      }
      process.stdout.write('\n> ');
      history.push({ role: 'assistant', content: answer });
    }
  } finally {
    rl.close();
    await engine.shutdown();
  }
}
