// Lines that Dawn's native code prints to stderr (fd 2, with fprintf: no flag, toggle or logging
// callback of dawn.node reaches them) that say nothing a user can act on. On lavapipe, every process
// that enumerates adapters prints, for example:
//   Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.
// The CLI filters them out below --log-level debug (src/cli/stderr-filter.ts). Kept apart from dawn.ts
// so that reading them does not load dawn.node.

/** One whole line (without its newline) of known Dawn noise. */
export const DAWN_NOISE_LINE = /^Warning: maxDynamic\w+PerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;

/** The start every noise line shares: a partial line that could still become one is held back. */
export const DAWN_NOISE_PREFIX = 'Warning: maxDynamic';

/**
 * Passes a byte stream through line by line, dropping the lines `drop` matches. Text of a line that
 * cannot be noise goes out at once, newline or not, so progress bars that redraw with \r stay live;
 * only a line that starts like noise waits for its newline.
 */
export class LineFilter {
  private pending = '';
  /** The current line was already judged (and partly written): the rest of it passes. */
  private passing = false;

  constructor(
    private readonly write: (text: string) => void,
    private readonly drop: (line: string) => boolean = (line) => DAWN_NOISE_LINE.test(line),
    private readonly prefix: string = DAWN_NOISE_PREFIX,
  ) {}

  push(text: string): void {
    let out = '';
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      const piece = text.slice(start, nl);
      start = nl + 1;
      if (this.passing) out += `${piece}\n`;
      else {
        const line = this.pending + piece;
        if (!this.drop(line)) out += `${line}\n`;
      }
      this.pending = '';
      this.passing = false;
    }
    const rest = text.slice(start);
    if (rest) {
      if (this.passing) out += rest;
      else {
        this.pending += rest;
        if (!couldStart(this.pending, this.prefix)) {
          out += this.pending;
          this.pending = '';
          this.passing = true;
        }
      }
    }
    if (out) this.write(out);
  }

  /** The end of the stream: a held partial line goes out (it never became a whole noise line). */
  end(): void {
    if (this.pending) this.write(this.pending);
    this.pending = '';
    this.passing = false;
  }
}

function couldStart(partial: string, prefix: string): boolean {
  return partial.length <= prefix.length ? prefix.startsWith(partial) : partial.startsWith(prefix);
}
