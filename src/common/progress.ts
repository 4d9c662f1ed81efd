// The one progress bar, for weight loading ([model]) and model downloads ([hub]). On a TTY it redraws one
// line on stderr: "[model] [#########-----]  64% 97.7 MB/152.6 MB 310.2 MB/s layers.7.down"; otherwise
// it prints nothing until a single summary line at the end, e.g. "[model] loaded 12 layers, 152.6 MB in
// 1.2 s", so logs and CI output stay one line per load or download.
import { formatBytes } from './bytes.js';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface ProgressBarOptions {
  /** Starts every line, e.g. '[model]'. */
  label: string;
  /** Default process.stderr. */
  stream?: ProgressStream;
  /** Milliseconds; tests pass a fake clock. */
  now?: () => number;
}

const BAR_WIDTH = 30;
const REDRAW_INTERVAL_MS = 100;

/** Byte progress of one job: start, advance as bytes arrive, finish with a summary line. */
export class ProgressBar {
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private totalBytes: number | null = null;
  private doneBytes = 0;
  private bytesAtStart = 0;
  private startedAt = 0;
  private lastDrawAt = -Infinity;
  private barShown = false;

  constructor(private readonly options: ProgressBarOptions) {
    this.stream = options.stream ?? process.stderr;
    this.now = options.now ?? (() => performance.now());
  }

  /** `totalBytes` null when unknown (no percentage then); `doneBytes` what an earlier attempt left. */
  start(totalBytes: number | null, doneBytes = 0): void {
    this.totalBytes = totalBytes;
    this.doneBytes = doneBytes;
    this.bytesAtStart = doneBytes;
    this.startedAt = this.now();
    this.lastDrawAt = -Infinity;
  }

  /** Bytes so far, including those start() was given. */
  get bytes(): number {
    return this.doneBytes;
  }

  /** Since start(). */
  get seconds(): number {
    return (this.now() - this.startedAt) / 1000;
  }

  /** Adds `bytes`; on a TTY redraws at most every 100 ms, and always on reaching the total. */
  advance(bytes: number, detail = ''): void {
    this.doneBytes += bytes;
    if (!this.stream.isTTY) return;
    const t = this.now();
    const complete = this.totalBytes !== null && this.doneBytes >= this.totalBytes;
    if (t - this.lastDrawAt < REDRAW_INTERVAL_MS && !complete) return;
    this.lastDrawAt = t;
    const total = this.totalBytes;
    let bar = '';
    if (total !== null) {
      const fraction = total > 0 ? Math.min(this.doneBytes / total, 1) : 1;
      const filled = Math.round(fraction * BAR_WIDTH);
      bar = `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${`${Math.floor(fraction * 100)}`.padStart(3)}% `;
    }
    const amount = total !== null ? `${formatBytes(this.doneBytes)}/${formatBytes(total)}` : formatBytes(this.doneBytes);
    const seconds = (t - this.startedAt) / 1000;
    const rate = seconds > 0 ? ` ${formatBytes((this.doneBytes - this.bytesAtStart) / seconds)}/s` : '';
    this.stream.write(`\r${this.options.label} ${bar}${amount}${rate}${detail ? ` ${detail}` : ''}\x1b[K`);
    this.barShown = true;
  }

  /** Takes the bar off the line (TTY) so that other output can be written; the next advance redraws it. */
  clear(): void {
    if (this.barShown) this.stream.write('\r\x1b[K');
    this.barShown = false;
  }

  /** Writes "<label> <summary>" as the last line, in place of the bar on a TTY. */
  finish(summary: string): void {
    this.stream.write(`${this.stream.isTTY ? '\r\x1b[K' : ''}${this.options.label} ${summary}\n`);
    this.barShown = false;
  }
}

/** Weight loading as src/checkpoint/weights.ts reports it. */
export interface LoadProgress {
  start(totalBytes: number, numLayers: number): void;
  advance(bytes: number, tensorName: string): void;
  finish(): void;
}

/** "loaded 12 layers, 152.6 MB in 1.2 s". */
export function formatLoadSummary(numLayers: number, bytes: number, seconds: number): string {
  return `loaded ${numLayers} layers, ${formatBytes(bytes)} in ${seconds.toFixed(1)} s`;
}

/** Weight-loading progress on a ProgressBar: the tensor name after the bar, the layer count in the summary. */
export class ConsoleLoadProgress implements LoadProgress {
  private readonly bar: ProgressBar;
  private numLayers = 0;
  /** The summary line printed by finish(); null before. */
  summary: string | null = null;

  constructor(stream: ProgressStream = process.stderr, label = '[model]', now: () => number = () => performance.now()) {
    this.bar = new ProgressBar({ label, stream, now });
  }

  start(totalBytes: number, numLayers: number): void {
    this.numLayers = numLayers;
    this.bar.start(totalBytes);
  }

  advance(bytes: number, tensorName: string): void {
    this.bar.advance(bytes, tensorName);
  }

  finish(): void {
    this.summary = formatLoadSummary(this.numLayers, this.bar.bytes, this.bar.seconds);
    this.bar.finish(this.summary);
  }
}
