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

export interface ChatPromptOptions {
  /** Append the assistant header (default true). */
  addGenerationPrompt?: boolean;
  /** Continue the last message (an assistant's prefill) instead of closing its turn (default false). */
  continueFinalMessage?: boolean;
  /** Extra template variables (chat_template_kwargs). */
  kwargs?: Readonly<Record<string, unknown>>;
}

/** The prompt token ids for a chat: the template with the generation prompt, encoded by encodeChatText. */
export function chatPromptTokenIds(codec: TextCodec, messages: readonly ChatMessage[], options: ChatPromptOptions = {}): number[] {
  return encodeChatText(codec, renderChat(codec, messages, options));
}

/**
 * The rendered chat text. continueFinalMessage works as in transformers' apply_chat_template (which
 * vLLM calls): render without the generation prompt, then cut everything after the last occurrence of
 * the final message's content (its end-of-turn tokens), retrying with the content trimmed for templates
 * that trim messages. The caller rejects continueFinalMessage together with addGenerationPrompt.
 */
export function renderChat(codec: TextCodec, messages: readonly ChatMessage[], options: ChatPromptOptions = {}): string {
  const continueFinal = options.continueFinalMessage === true;
  const rendered = codec.applyChatTemplate(messages, {
    addGenerationPrompt: continueFinal ? false : (options.addGenerationPrompt ?? true),
    kwargs: options.kwargs,
  });
  const final = messages.at(-1)?.content ?? '';
  if (!continueFinal || final === '') return rendered;
  for (const content of [final, final.trim()]) {
    const at = rendered.lastIndexOf(content);
    if (content !== '' && at >= 0) return rendered.slice(0, at + content.length);
  }
  return rendered;
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

/** vLLM's get_diff_sampling_param fields: generation_config.json key -> SamplingParams key. */
const DEFAULT_FIELDS = [
  ['temperature', 'temperature'],
  ['top_p', 'topP'],
  ['top_k', 'topK'],
  ['min_p', 'minP'],
  ['repetition_penalty', 'repetitionPenalty'],
] as const;

/**
 * What `serve --generation-config auto` makes request defaults, as vLLM does: every sampling field
 * generation_config.json sets (temperature, top_p, top_k, min_p, repetition_penalty), whatever do_sample
 * says (vLLM ignores it; `generate` follows HF and goes greedy without do_sample). A request's own
 * values always win. Its eos_token_id (one or a list) already ends generation (ModelConfig.eosTokenIds).
 */
export async function requestDefaults(modelDir: string): Promise<Partial<SamplingParams>> {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(join(modelDir, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
  const out: Partial<Record<(typeof DEFAULT_FIELDS)[number][1], number>> = {};
  for (const [key, field] of DEFAULT_FIELDS) if (typeof json[key] === 'number') out[field] = json[key] as number;
  if (out.topK !== undefined) out.topK = Math.max(0, out.topK);
  return out;
}

/** The startup log line naming the defaults in use. */
export function describeRequestDefaults(defaults: Partial<SamplingParams>): string {
  const parts = DEFAULT_FIELDS.filter(([, f]) => defaults[f] !== undefined).map(([key, f]) => `${key}=${defaults[f]}`);
  return parts.length
    ? `request defaults from generation_config.json (--generation-config auto; requests may override, --generation-config vllm ignores them): ${parts.join(' ')}`
    : 'generation_config.json sets no sampling defaults; requests default to temperature=1 top_p=1';
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
