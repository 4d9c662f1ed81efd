// Building prompts and sampling parameters the same way for every entry point (CLI, HTTP).
import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_SAMPLING, type SamplingParams } from '../sampling/params.js';
import type { ChatMessage, TextCodec } from '../common/types.js';

/**
 * Encodes a rendered chat template. The template writes BOS as text when the model wants one
 * (Llama's "{{ bos_token }}"), so it is encoded without adding special tokens; if the rendered text
 * did not start with BOS but the model has one, BOS is prepended, since every model was trained with
 * it there. Either way the prompt starts with exactly one BOS.
 */
export function encodeChatText(codec: TextCodec, text: string): number[] {
  const ids = codec.encode(text, { addSpecialTokens: false });
  if (codec.bosTokenId !== null && ids[0] !== codec.bosTokenId) ids.unshift(codec.bosTokenId);
  return ids;
}

/** The prompt token ids for a chat: the template with the generation prompt, encoded by encodeChatText. */
export function chatPromptTokenIds(codec: TextCodec, messages: readonly ChatMessage[]): number[] {
  return encodeChatText(codec, codec.applyChatTemplate(messages, { addGenerationPrompt: true }));
}

/** The prompt token ids for plain text: BOS (when the model uses one) followed by the text; '' gives BOS alone. */
export function textPromptTokenIds(codec: TextCodec, text: string): number[] {
  if (text === '') return codec.bosTokenId === null ? [] : [codec.bosTokenId];
  return codec.encode(text, { addSpecialTokens: true });
}

/**
 * The model's own sampling defaults from generation_config.json, as HF generate() applies them:
 * greedy unless do_sample is true.
 */
export async function generationDefaults(modelDir: string): Promise<Partial<SamplingParams>> {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(join(modelDir, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
  if (json.do_sample !== true) return { temperature: 0 };
  const out: Partial<SamplingParams> = {};
  if (typeof json.temperature === 'number') out.temperature = json.temperature;
  if (typeof json.top_p === 'number') out.topP = json.top_p;
  if (typeof json.top_k === 'number') out.topK = json.top_k;
  if (typeof json.repetition_penalty === 'number') out.repetitionPenalty = json.repetition_penalty;
  return out;
}

/** A seed for callers that gave none, so every request stays reproducible from the engine's log. */
export function randomSeed(): number {
  return randomInt(0, 2 ** 31);
}

export function samplingParams(overrides: Partial<SamplingParams>): SamplingParams {
  return { ...DEFAULT_SAMPLING, seed: randomSeed(), ...stripUndefined(overrides) };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
