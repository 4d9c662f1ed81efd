// Reads a tool-call region's body as far as it has been written, so a call's name and its arguments
// can be streamed while the model writes them (as vLLM's streaming tool parsers do with partial JSON).
// A call is committed once its object reads `{"name": <string>, "arguments" | "parameters": {`: from
// then on it is a call, and its arguments are the model's JSON text with the whitespace between tokens
// dropped, everything else as written, so the arguments read from a longer body always extend the ones
// read from a shorter one (what makes streamed fragments add up to the whole answer). Anything else
// (a key order that puts the name later, arguments given as a string, the mistral v11 `name{...}`
// spelling) is left to the whole-body parse when the region closes.

/** How the calls of one region are laid out. */
export type RegionLayout = 'single' | 'semicolon' | 'array';

export interface ScannedCall {
  name: string;
  /** Arguments text so far. */
  arguments: string;
}

export interface RegionScan {
  /** Committed calls, in order. */
  calls: ScannedCall[];
  /**
   * 'open': everything read fits, more may come. 'uncommitted': from `restAt` on the body is not a
   * streamable call (the whole-body parse decides). 'broken-arguments': the last call's arguments turn
   * invalid at `restAt` (the rest is the model's, as written). 'broken': invalid JSON outside any
   * arguments from `restAt` on.
   */
  state: 'open' | 'uncommitted' | 'broken-arguments' | 'broken';
  restAt: number;
}

const END = new Error('end of input');
const INVALID = new Error('invalid JSON');
const UNCOMMITTED = new Error('not a streamable call');

class Reader {
  at = 0;
  constructor(readonly text: string) {}

  skipSpace(): void {
    while (this.at < this.text.length && ' \t\n\r'.includes(this.text[this.at]!)) this.at++;
  }

  peek(): string {
    if (this.at >= this.text.length) throw END;
    return this.text[this.at]!;
  }

  take(ch: string): void {
    if (this.peek() !== ch) throw INVALID;
    this.at++;
  }

  /** One JSON value, its minified text passed to `out` piece by piece as it is read. */
  value(out: (s: string) => void): void {
    const ch = this.peek();
    if (ch === '{' || ch === '[') {
      const close = ch === '{' ? '}' : ']';
      this.at++;
      out(ch);
      this.skipSpace();
      if (this.peek() === close) {
        this.at++;
        out(close);
        return;
      }
      for (;;) {
        if (close === '}') {
          this.string(out);
          this.skipSpace();
          this.take(':');
          out(':');
          this.skipSpace();
        }
        this.value(out);
        this.skipSpace();
        const next = this.peek();
        if (next === ',') {
          this.at++;
          out(',');
          this.skipSpace();
        } else if (next === close) {
          this.at++;
          out(close);
          return;
        } else throw INVALID;
      }
    }
    if (ch === '"') {
      this.string(out);
      return;
    }
    if (ch === '-' || (ch >= '0' && ch <= '9')) {
      this.number(out);
      return;
    }
    for (const word of ['true', 'false', 'null']) {
      if (word.startsWith(ch)) {
        for (const c of word) {
          this.take(c);
          out(c);
        }
        return;
      }
    }
    throw INVALID;
  }

  string(out: (s: string) => void): void {
    this.take('"');
    out('"');
    for (;;) {
      const ch = this.peek();
      this.at++;
      if (ch === '"') {
        out('"');
        return;
      }
      if (ch < ' ') throw INVALID;
      out(ch);
      if (ch !== '\\') continue;
      const esc = this.peek();
      if (!'"\\/bfnrtu'.includes(esc)) throw INVALID;
      this.at++;
      out(esc);
      if (esc !== 'u') continue;
      for (let k = 0; k < 4; k++) {
        const h = this.peek();
        if (!/[0-9a-fA-F]/.test(h)) throw INVALID;
        this.at++;
        out(h);
      }
    }
  }

  /** A number: its end is only known at the next character, so a number at the end of the input is incomplete. */
  number(out: (s: string) => void): void {
    const rest = this.text.slice(this.at);
    if (/^-?(?:0|[1-9][0-9]*)?(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?$/.test(rest)) {
      out(rest);
      this.at = this.text.length;
      throw END;
    }
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(rest);
    if (!m) throw INVALID;
    out(m[0]);
    this.at += m[0].length;
  }

  /** A string value (the name), decoded. */
  stringValue(): string {
    const start = this.at;
    this.string(() => undefined);
    return JSON.parse(this.text.slice(start, this.at)) as string;
  }
}

/** Scans `body` (a region's text after its opening tag, without its end tag). */
export function scanRegion(body: string, layout: RegionLayout): RegionScan {
  const r = new Reader(body);
  const calls: ScannedCall[] = [];
  /** Where the call being read started, and whether its header (before the commit) is being read. */
  let callStart = 0;
  let inHeader = false;
  let inArguments = false;
  const readCall = (): void => {
    callStart = r.at;
    inHeader = true;
    r.take('{');
    r.skipSpace();
    if (r.stringValue() !== 'name') throw UNCOMMITTED;
    r.skipSpace();
    r.take(':');
    r.skipSpace();
    const name = r.stringValue();
    r.skipSpace();
    r.take(',');
    r.skipSpace();
    const key = r.stringValue();
    if (key !== 'arguments' && key !== 'parameters') throw UNCOMMITTED;
    r.skipSpace();
    r.take(':');
    r.skipSpace();
    if (r.peek() !== '{') throw UNCOMMITTED;
    const call: ScannedCall = { name, arguments: '' };
    calls.push(call);
    inHeader = false;
    inArguments = true;
    r.value((s) => {
      call.arguments += s;
    });
    inArguments = false;
    // Other keys after the arguments are read and ignored, as the whole-body parse does.
    r.skipSpace();
    while (r.peek() === ',') {
      r.at++;
      r.skipSpace();
      r.string(() => undefined);
      r.skipSpace();
      r.take(':');
      r.skipSpace();
      r.value(() => undefined);
      r.skipSpace();
    }
    r.take('}');
  };
  try {
    r.skipSpace();
    if (layout === 'array' && r.peek() === '[') {
      r.at++;
      r.skipSpace();
      for (;;) {
        readCall();
        r.skipSpace();
        if (r.peek() === ']') {
          r.at++;
          break;
        }
        r.take(',');
        r.skipSpace();
      }
    } else {
      readCall();
      r.skipSpace();
      while (layout === 'semicolon' && r.peek() === ';') {
        r.at++;
        r.skipSpace();
        readCall();
        r.skipSpace();
      }
    }
    r.skipSpace();
    if (r.at < body.length) throw INVALID;
    return { calls, state: 'open', restAt: body.length };
  } catch (err) {
    if (err === END) return { calls, state: 'open', restAt: body.length };
    if (err !== INVALID && err !== UNCOMMITTED) throw err;
    // Before any commit the whole-body parse decides; a later call that cannot be streamed is left to it too.
    if (calls.length === 0) return { calls, state: 'uncommitted', restAt: 0 };
    if (inHeader) return { calls, state: err === UNCOMMITTED ? 'uncommitted' : 'broken', restAt: callStart };
    return { calls, state: inArguments ? 'broken-arguments' : 'broken', restAt: r.at };
  }
}
