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

/**
 * InternLM2's own chat template renders no tools. This is the tool template LMDeploy and vLLM
 * (examples/tool_chat_template_internlm2_tool.jinja) use for it, in InternLM2's chat format: the tools
 * as JSON in a "system name=<|plugin|>" turn, calls as <|action_start|><|plugin|>{...}<|action_end|>,
 * tool results as "environment name=<|plugin|>" turns. Used automatically for requests with tools.
 */
export const INTERNLM2_TOOL_CHAT_TEMPLATE = `{{ bos_token }}
{%- if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}<|im_start|>system
{{ messages[0]['content'] }}<|im_end|>
{% else %}{% set loop_messages = messages %}{% endif %}
{%- if tools %}<|im_start|>system name=<|plugin|>
[{% for tool in tools %}{{ tool['function'] | tojson }}{% if not loop.last %}, {% endif %}{% endfor %}]<|im_end|>
{% endif %}
{%- for message in loop_messages %}
{%- if message['role'] == 'assistant' and message['tool_calls'] %}<|im_start|>assistant
{% if message['content'] %}{{ message['content'] }}{% endif %}
{%- for call in message['tool_calls'] %}<|action_start|><|plugin|>
{"name": "{{ call['function']['name'] }}", "parameters": {{ call['function']['arguments'] | tojson }}}<|action_end|>
{%- endfor %}<|im_end|>
{% elif message['role'] == 'tool' %}<|im_start|>environment name=<|plugin|>
{{ message['content'] }}<|im_end|>
{% else %}<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}`;

/**
 * The template that renders requests with tools when the model's own cannot: InternLM2's (its
 * tokenizer class names it) when its template never mentions tools. null: the model's template does.
 */
export function toolChatTemplateFor(source: string | null, tokenizerClass: unknown): string | null {
  if (typeof tokenizerClass !== 'string' || !/^InternLM2/i.test(tokenizerClass)) return null;
  if (source !== null && /\btools\b/.test(source)) return null;
  return INTERNLM2_TOOL_CHAT_TEMPLATE;
}

/** One parsed template; rendering is pure and reentrant. */
export class ChatTemplate {
  private readonly template: Template;
  /** Renders requests that carry tools, when the model's template cannot (toolChatTemplateFor). */
  private readonly toolTemplate: Template | null;

  /**
   * @param isModelTemplate false for DEFAULT_CHAT_TEMPLATE (the model shipped none).
   * @param toolSource the template for requests with tools (toolChatTemplateFor), or null.
   */
  constructor(
    readonly source: string,
    readonly isModelTemplate: boolean,
    toolSource: string | null = null,
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new Error(`the chat template does not parse as Jinja (${(err as Error).message}): fix it or pass another with --chat-template`);
    }
    this.toolTemplate = toolSource === null ? null : new Template(toolSource);
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
    const tools = context.tools;
    const template = this.toolTemplate !== null && Array.isArray(tools) && tools.length > 0 ? this.toolTemplate : this.template;
    try {
      return template.render(context);
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
