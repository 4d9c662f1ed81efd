// Reasoning parsers (serve --reasoning-parser, named as in vLLM and LMDeploy): split a chat answer's
// "<think>...</think>" into reasoning_content and the rest into content, incrementally, so a tag split
// across stream chunks ("</th" + "ink>") is still found and never shown. Parsing the model's text is the
// serving layer's job, as vLLM's reasoning parsers live in its OpenAI serving code.
//   deepseek_r1: the chat template already opened <think>, so the output starts inside the reasoning
//                (a leading "<think>" the model writes anyway is dropped) until "</think>".
//   qwen3:       the output is reasoning only if it starts with "<think>".
// Without "</think>" a deepseek_r1 answer is all reasoning, a qwen3 one (once started) too.

export const REASONING_PARSERS = ['deepseek_r1', 'qwen3'] as const;
export type ReasoningParserName = (typeof REASONING_PARSERS)[number];

const START = '<think>';
const END = '</think>';

/** Text of one push, split. */
export interface ReasoningSplit {
  reasoning: string;
  content: string;
}

type Mode = 'start' | 'reasoning' | 'content';

/** One choice's parser: feed its text deltas in order, then flush once at the end. */
export class ReasoningParser {
  private mode: Mode = 'start';
  /** Text held back because it may be the beginning of a tag. */
  private held = '';

  constructor(readonly name: ReasoningParserName) {}

  push(text: string): ReasoningSplit {
    const out: ReasoningSplit = { reasoning: '', content: '' };
    let buffer = this.held + text;
    this.held = '';
    while (buffer.length > 0) {
      if (this.mode === 'start') {
        if (buffer.startsWith(START)) {
          buffer = buffer.slice(START.length);
          this.mode = 'reasoning';
        } else if (START.startsWith(buffer)) {
          this.held = buffer; // "<thi": not decided yet
          return out;
        } else {
          this.mode = this.name === 'deepseek_r1' ? 'reasoning' : 'content';
        }
        continue;
      }
      if (this.mode === 'content') {
        out.content += buffer;
        return out;
      }
      const end = buffer.indexOf(END);
      if (end >= 0) {
        out.reasoning += buffer.slice(0, end);
        buffer = buffer.slice(end + END.length);
        this.mode = 'content';
        continue;
      }
      const keep = partialTagLength(buffer, END);
      out.reasoning += buffer.slice(0, buffer.length - keep);
      this.held = buffer.slice(buffer.length - keep);
      return out;
    }
    return out;
  }

  /** End of the answer: held-back text belongs where the parser stands. */
  flush(): ReasoningSplit {
    const rest = this.held;
    this.held = '';
    const inReasoning = this.mode === 'reasoning' || (this.mode === 'start' && this.name === 'deepseek_r1');
    return inReasoning ? { reasoning: rest, content: '' } : { reasoning: '', content: rest };
  }
}

/** Length of the longest suffix of text that is a proper prefix of tag. */
function partialTagLength(text: string, tag: string): number {
  for (let n = Math.min(text.length, tag.length - 1); n > 0; n--) if (tag.startsWith(text.slice(text.length - n))) return n;
  return 0;
}

/**
 * The parser for one request, or null: no parser configured, or the request turned thinking off
 * (chat_template_kwargs {"enable_thinking": false} as Qwen3's template reads it, or {"thinking": false}).
 */
export function reasoningParserFor(name: ReasoningParserName | null, kwargs: Readonly<Record<string, unknown>> | null | undefined): ReasoningParser | null {
  if (name === null) return null;
  if (kwargs?.enable_thinking === false || kwargs?.thinking === false) return null;
  return new ReasoningParser(name);
}

/** A whole answer, split (non-streaming responses). */
export function splitReasoning(parser: ReasoningParser, text: string): ReasoningSplit {
  const a = parser.push(text);
  const b = parser.flush();
  return { reasoning: a.reasoning + b.reasoning, content: a.content + b.content };
}
