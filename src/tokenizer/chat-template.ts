// Chat templates: find the model's Jinja template and render messages with it the way Hugging Face's
// apply_chat_template does (same variables, trim_blocks + lstrip_blocks), through @huggingface/jinja.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import type { ChatMessage, ChatTemplateOptions } from '../common/types.js';
import { InvalidRequestError } from '../common/errors.js';

/**
 * The template for models that ship none: the message contents joined with newlines, no role markers,
 * no generation prompt. Chosen over ChatML because models without a template are almost always base
 * models (stories260K is one): they never saw role markers, whose text (e.g. "<|im_start|>") is not in
 * their vocabulary and would be spelled out in byte tokens and derail them. Plain text turns a chat
 * request into a completion of the conversation's text, which is what such a model can do.
 */
export const DEFAULT_CHAT_TEMPLATE = "{% for message in messages %}{% if not loop.first %}{{ '\\n' }}{% endif %}{{ message['content'] }}{% endfor %}";

/** The special-token strings a template may reference, as transformers passes them. */
export interface ChatTemplateTokens {
  bosToken: string | null;
  eosToken: string | null;
  unkToken: string | null;
  padToken: string | null;
}

export type RenderOptions = ChatTemplateOptions;

/** One parsed template; rendering is pure and reentrant. */
export class ChatTemplate {
  private readonly template: Template;

  /** @param isModelTemplate false for DEFAULT_CHAT_TEMPLATE (the model shipped none). */
  constructor(
    readonly source: string,
    readonly isModelTemplate: boolean,
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new Error(`the chat template does not parse as Jinja (${(err as Error).message}): fix it or pass another with --chat-template`);
    }
  }

  render(messages: readonly ChatMessage[], tokens: ChatTemplateTokens, options: RenderOptions = {}): string {
    const context: Record<string, unknown> = {
      // chat_template_kwargs first, so they can add variables but not replace the ones below (as vLLM).
      ...options.kwargs,
      // Copies, so a template that mutates its input (namespace tricks) cannot touch the caller's.
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
    };
    // transformers passes every special token attribute; undefined ones stay undefined (render as '').
    if (tokens.bosToken !== null) context.bos_token = tokens.bosToken;
    if (tokens.eosToken !== null) context.eos_token = tokens.eosToken;
    if (tokens.unkToken !== null) context.unk_token = tokens.unkToken;
    if (tokens.padToken !== null) context.pad_token = tokens.padToken;
    try {
      return this.template.render(context);
    } catch (err) {
      // Templates reject conversations they cannot express (raise_exception("roles must alternate")):
      // that is the caller's mistake, so it becomes a 400 naming the messages.
      throw new InvalidRequestError(`the model's chat template rejected the messages: ${(err as Error).message}`, 'messages');
    }
  }
}

/** tokenizer_config.json's chat_template: one string, or named templates ([{name, template}]). */
export type ChatTemplateField = string | readonly { name: string; template: string }[] | null | undefined;

/**
 * Finds the model's own template, in the order transformers reads them: chat_template.jinja (newer
 * transformers save it beside the config), tokenizer_config.json's chat_template (the one named
 * "default" when there are several), chat_template.json. Returns null when the model has none.
 */
export function findModelChatTemplate(modelDir: string, configField: ChatTemplateField): string | null {
  const jinjaPath = join(modelDir, 'chat_template.jinja');
  if (existsSync(jinjaPath)) return readFileSync(jinjaPath, 'utf8');
  const fromConfig = pickTemplate(configField);
  if (fromConfig !== null) return fromConfig;
  const jsonPath = join(modelDir, 'chat_template.json');
  if (existsSync(jsonPath)) {
    const parsed = JSON.parse(readFileSync(jsonPath, 'utf8')) as { chat_template?: ChatTemplateField };
    return pickTemplate(parsed.chat_template);
  }
  return null;
}

function pickTemplate(field: ChatTemplateField): string | null {
  if (field === null || field === undefined) return null;
  if (typeof field === 'string') return field;
  const named = field.find((t) => t.name === 'default') ?? field[0];
  return named?.template ?? null;
}
