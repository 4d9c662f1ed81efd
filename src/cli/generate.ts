// `generate`: one prompt in, the generated text streamed to stdout (only the text), timing on stderr.
import { Engine } from '../engine/engine.js';
import { setLogLevel, type LogLevel } from '../common/log.js';
import { chatPromptTokenIds, generationDefaults, samplingParams, textPromptTokenIds } from '../engine/prompt.js';
import type { SamplingParams } from '../sampling/params.js';
import { resolveModel } from '../hub/hub.js';
import { toEngineOptions, type EngineArgs } from './engine-options.js';

export interface GenerateArgs extends EngineArgs {
  prompt: string;
  maxTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed?: number;
  chat: boolean;
  ignoreEos: boolean;
  logLevel?: LogLevel;
}

export async function runGenerate(args: GenerateArgs): Promise<void> {
  if (args.logLevel) setLogLevel(args.logLevel);
  const modelDir = await resolveModel(args.model, { revision: args.revision, progress: true });
  const t0 = performance.now();
  const engine = await Engine.create(await toEngineOptions(args, modelDir, { progress: true }));
  const loadMs = performance.now() - t0;
  const promptTokenIds = args.chat ? chatPromptTokenIds(engine.codec, [{ role: 'user', content: args.prompt }]) : textPromptTokenIds(engine.codec, args.prompt);
  const sampling = await cliSampling(modelDir, args);
  const t1 = performance.now();
  let firstTokenMs = 0;
  let numTokens = 0;
  for await (const delta of engine.generate({
    promptTokenIds,
    sampling,
    maxTokens: args.maxTokens,
    stop: [],
    stopTokenIds: [],
    ignoreEos: args.ignoreEos,
    skipSpecialTokens: true,
  })) {
    if (numTokens === 0 && delta.tokenIds.length) firstTokenMs = performance.now() - t1;
    numTokens += delta.tokenIds.length;
    process.stdout.write(delta.text);
  }
  process.stdout.write('\n');
  const totalMs = performance.now() - t1;
  const decodeTps = numTokens > 1 ? ((numTokens - 1) * 1000) / (totalMs - firstTokenMs) : 0;
  process.stderr.write(
    `[generate] load ${(loadMs / 1000).toFixed(2)} s, prompt ${promptTokenIds.length} tokens, first token ${firstTokenMs.toFixed(0)} ms, ` +
      `${numTokens} tokens in ${(totalMs / 1000).toFixed(2)} s (decode ${decodeTps.toFixed(1)} tok/s)\n`,
  );
  await engine.shutdown();
}

export async function cliSampling(
  modelDir: string,
  args: Pick<GenerateArgs, 'temperature' | 'topP' | 'topK' | 'minP' | 'repetitionPenalty' | 'seed'>,
): Promise<SamplingParams> {
  const given = {
    temperature: args.temperature,
    topP: args.topP,
    topK: args.topK,
    minP: args.minP,
    repetitionPenalty: args.repetitionPenalty,
    seed: args.seed,
  };
  // Flags the user gave win over generation_config.json; flags left out must not erase its values.
  const flags = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  return samplingParams({ ...(await generationDefaults(modelDir)), ...flags });
}
