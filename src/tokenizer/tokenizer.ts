// The model's tokenizer: tokenizer.json through @huggingface/tokenizers, plus what the server needs
// around it (BOS/EOS ids, special tokens, per-token bytes, the chat template).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import type { ChatMessage, ChatTemplateOptions, TextCodec } from '../common/types.js';
import {
  ChatTemplate,
  DEFAULT_CHAT_TEMPLATE,
  findModelChatTemplate,
  toolChatTemplateFor,
  type ChatTemplateField,
  type ChatTemplateTokens,
} from './chat-template.js';

/** A special token as tokenizer_config.json spells it: the text, or an AddedToken object. */
type TokenField = string | { content: string } | null | undefined;

/** The fields of tokenizer_config.json this module reads. */
export interface TokenizerConfigJson {
  chat_template?: ChatTemplateField;
  bos_token?: TokenField;
  eos_token?: TokenField;
  unk_token?: TokenField;
  pad_token?: TokenField;
  add_bos_token?: boolean;
  additional_special_tokens?: TokenField[];
  [key: string]: unknown;
}

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

interface DecoderJson {
  type: string;
  decoders?: DecoderJson[];
  pattern?: { String?: string; Regex?: string };
  content?: string;
  replacement?: string;
}

/** The fields of tokenizer.json this module reads (the rest goes to @huggingface/tokenizers as is). */
export interface TokenizerJson {
  added_tokens?: AddedTokenJson[];
  decoder?: DecoderJson | null;
  model: { type: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface TokenizerOptions {
  /** Template source that replaces the model's own (the contents of a --chat-template file). */
  chatTemplate?: string;
}

export class Tokenizer implements TextCodec {
  readonly hasChatTemplate: boolean;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: number[];
  readonly vocabSize: number;

  private readonly hf: HfTokenizer;
  private readonly chatTemplate: ChatTemplate;
  private readonly templateTokens: ChatTemplateTokens;
  private readonly bosToken: string | null;
  private readonly addBosToken: boolean | undefined;
  private readonly specialTokenIds: ReadonlySet<number>;
  private readonly addedTokenIds: ReadonlySet<number>;
  private readonly bytesOf: TokenBytesRule;
  private readonly tokenBytesCache = new Map<number, Uint8Array>();

  /** Reads tokenizer.json and (when present) tokenizer_config.json and the chat template files. */
  static async fromModelDir(modelDir: string, options: TokenizerOptions = {}): Promise<Tokenizer> {
    const tokenizerPath = join(modelDir, 'tokenizer.json');
    if (!existsSync(tokenizerPath)) {
      throw new Error(
        `no tokenizer.json in ${modelDir}: this server reads Hugging Face "fast" tokenizers; ` +
          'create one with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir)',
      );
    }
    const tokenizerJson = JSON.parse(readFileSync(tokenizerPath, 'utf8')) as TokenizerJson;
    const configPath = join(modelDir, 'tokenizer_config.json');
    const config = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as TokenizerConfigJson) : {};
    const chatTemplate = options.chatTemplate ?? findModelChatTemplate(modelDir, config.chat_template);
    return new Tokenizer(tokenizerJson, config, chatTemplate);
  }

  /** @param chatTemplate the template source, or null for DEFAULT_CHAT_TEMPLATE. */
  constructor(tokenizerJson: TokenizerJson, config: TokenizerConfigJson, chatTemplate: string | null) {
    // Like vLLM, decode never runs clean_up_tokenization_spaces (" ." -> "."): it is not prefix-stable,
    // so streamed text could never add up to it. The library would default it to true.
    this.hf = new HfTokenizer(tokenizerJson, { ...config, clean_up_tokenization_spaces: false });
    const addedTokens = tokenizerJson.added_tokens ?? [];

    this.bosToken = tokenText(config.bos_token);
    this.bosTokenId = this.bosToken === null ? null : (this.hf.token_to_id(this.bosToken) ?? null);
    const eosToken = tokenText(config.eos_token);
    const eosId = eosToken === null ? undefined : this.hf.token_to_id(eosToken);
    this.eosTokenIds = eosId === undefined ? [] : [eosId];
    this.addBosToken = config.add_bos_token;

    const special = new Set(addedTokens.filter((t) => t.special === true).map((t) => t.id));
    for (const field of config.additional_special_tokens ?? []) {
      const id = this.hf.token_to_id(tokenText(field) ?? '');
      if (id !== undefined) special.add(id);
    }
    this.specialTokenIds = special;

    let maxId = -1;
    for (const id of this.hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;

    this.addedTokenIds = new Set(addedTokens.map((t) => t.id));
    this.bytesOf = tokenBytesRule(tokenizerJson.decoder ?? null, this.addedTokenIds);
    this.hasChatTemplate = chatTemplate !== null;
    this.chatTemplate = new ChatTemplate(
      chatTemplate ?? DEFAULT_CHAT_TEMPLATE,
      chatTemplate !== null,
      toolChatTemplateFor(chatTemplate, config.tokenizer_class),
    );
    this.templateTokens = {
      bosToken: this.bosToken,
      eosToken,
      unkToken: tokenText(config.unk_token),
      padToken: tokenText(config.pad_token),
    };
  }

  /**
   * Text -> ids. With addSpecialTokens (default) the post-processor adds what the model expects (BOS
   * for Llama-style models), and BOS is added when tokenizer_config says add_bos_token but the
   * post-processor does not. A text that already starts with the BOS token (a chat template rendering
   * bos_token) gets no second one: a double BOS is always a mistake, unlike in transformers.
   */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const addSpecialTokens = options.addSpecialTokens ?? true;
    const ids = this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    if (!addSpecialTokens || this.bosTokenId === null || this.bosToken === null) return ids;
    if (this.addBosToken === true && ids[0] !== this.bosTokenId) ids.unshift(this.bosTokenId);
    if (ids[0] === this.bosTokenId && ids[1] === this.bosTokenId && text.startsWith(this.bosToken)) ids.shift();
    return ids;
  }

  /** Ids -> text. Ids the tokenizer does not know (padded embedding rows) decode to nothing. */
  decode(tokenIds: readonly number[], options: { skipSpecialTokens?: boolean; spacesBetweenSpecialTokens?: boolean } = {}): string {
    const known = tokenIds.filter((id) => this.hf.id_to_token(id) !== undefined);
    if (known.length === 0) return '';
    const skip = options.skipSpecialTokens ?? false;
    if (options.spacesBetweenSpecialTokens && known.some((id) => this.addedTokenIds.has(id) && !(skip && this.specialTokenIds.has(id)))) {
      return this.decodeSpaced(known, skip);
    }
    return this.hf.decode(known, { skip_special_tokens: skip });
  }

  /**
   * vLLM's (transformers' slow) decode with spaces_between_special_tokens: runs of ordinary tokens are
   * decoded together, each added token stands as its own text, and the pieces are joined with spaces.
   */
  private decodeSpaced(ids: readonly number[], skipSpecialTokens: boolean): string {
    const pieces: string[] = [];
    let run: number[] = [];
    const flush = () => {
      if (run.length) pieces.push(this.hf.decode(run, { skip_special_tokens: false }));
      run = [];
    };
    for (const id of ids) {
      if (skipSpecialTokens && this.specialTokenIds.has(id)) continue;
      if (!this.addedTokenIds.has(id)) {
        run.push(id);
        continue;
      }
      flush();
      pieces.push(this.hf.id_to_token(id) ?? '');
    }
    flush();
    return pieces.join(' ');
  }

  /** Renders the conversation; ready to encode (special tokens appear as their text). */
  /** The model's (or --chat-template's) template source; null when the model has none (the default is used). */
  get chatTemplateSource(): string | null {
    return this.chatTemplate.isModelTemplate ? this.chatTemplate.source : null;
  }

  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    return this.chatTemplate.render(messages, this.templateTokens, options);
  }

  isSpecialToken(id: number): boolean {
    return this.specialTokenIds.has(id);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /**
   * The bytes a token stands for inside a sequence: <0xE2> -> [0xE2], '▁' -> ' ' (per the decoder's
   * Replace/Metaspace rules), byte-level BPE characters mapped back to their bytes, added tokens as
   * their UTF-8 text. Sequence-level rules (stripping the very first space) are not applied.
   */
  tokenBytes(id: number): Uint8Array {
    let bytes = this.tokenBytesCache.get(id);
    if (bytes === undefined) {
      const token = this.hf.id_to_token(id);
      bytes = token === undefined ? new Uint8Array(0) : this.bytesOf(id, token);
      this.tokenBytesCache.set(id, bytes);
    }
    return bytes;
  }
}

function tokenText(field: TokenField): string | null {
  if (field === null || field === undefined) return null;
  return typeof field === 'string' ? field : field.content;
}

type TokenBytesRule = (id: number, token: string) => Uint8Array;

const utf8 = new TextEncoder();
const BYTE_FALLBACK_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

/** Reads the decoder pipeline once and returns the per-token part of it as a function. */
function tokenBytesRule(decoder: DecoderJson | null, addedTokenIds: ReadonlySet<number>): TokenBytesRule {
  const steps = flattenDecoders(decoder);
  const byteLevel = steps.some((d) => d.type === 'ByteLevel');
  const byteFallback = steps.some((d) => d.type === 'ByteFallback');
  const replacements: [string, string][] = [];
  for (const d of steps) {
    if (d.type === 'Replace' && d.pattern?.String !== undefined) replacements.push([d.pattern.String, d.content ?? '']);
    if (d.type === 'Metaspace') replacements.push([d.replacement ?? '\u2581', ' ']);
  }
  return (id, token) => {
    if (addedTokenIds.has(id)) return utf8.encode(token);
    const byte = byteFallback ? BYTE_FALLBACK_TOKEN.exec(token) : null;
    if (byte !== null) return Uint8Array.of(parseInt(byte[1]!, 16));
    if (byteLevel) return byteLevelBytes(token);
    let text = token;
    for (const [from, to] of replacements) text = text.replaceAll(from, to);
    return utf8.encode(text);
  };
}

function flattenDecoders(decoder: DecoderJson | null): DecoderJson[] {
  if (decoder === null) return [];
  return decoder.type === 'Sequence' ? (decoder.decoders ?? []).flatMap(flattenDecoders) : [decoder];
}

/** GPT-2's bytes_to_unicode, inverted: the printable character standing for each byte. */
const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const map = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(String.fromCodePoint(printable ? b : next++), b);
  }
  return map;
})();

function byteLevelBytes(token: string): Uint8Array {
  const out: number[] = [];
  for (const ch of token) {
    const b = BYTE_OF_CHAR.get(ch);
    if (b !== undefined) out.push(b);
    else out.push(...utf8.encode(ch)); // not a byte-level character: keep its own bytes
  }
  return Uint8Array.from(out);
}
