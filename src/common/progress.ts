// Weight-loading progress: a redrawn bar on a TTY (stderr), otherwise a single summary line at the end,
// e.g. "[model] loaded 12 layers, 152.6 MB in 1.2 s", so logs and CI output stay one line per load.

export interface LoadProgress {
  start(totalBytes: number, numLayers: number): void;
  advance(bytes: number, tensorName: string): void;
  finish(): void;
}

/** "loaded 12 layers, 152.6 MB in 1.2 s" (MB = 10^6 bytes). */
export function formatLoadSummary(numLayers: number, bytes: number, seconds: number): string {
  return `loaded ${numLayers} layers, ${(bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s`;
}

interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

const BAR_WIDTH = 30;
const REDRAW_INTERVAL_MS = 100;

export class ConsoleLoadProgress implements LoadProgress {
  private totalBytes = 0;
  private numLayers = 0;
  private numBytesLoaded = 0;
  private startedAt = 0;
  private lastDrawAt = -Infinity;
  /** The summary line printed by finish(); null before. */
  summary: string | null = null;

  constructor(
    private readonly stream: ProgressStream = process.stderr,
    private readonly label = '[model]',
    private readonly now: () => number = () => performance.now(),
  ) {}

  start(totalBytes: number, numLayers: number): void {
    this.totalBytes = totalBytes;
    this.numLayers = numLayers;
    this.numBytesLoaded = 0;
    this.startedAt = this.now();
  }

  advance(bytes: number, tensorName: string): void {
    this.numBytesLoaded += bytes;
    if (!this.stream.isTTY) return;
    const t = this.now();
    if (t - this.lastDrawAt < REDRAW_INTERVAL_MS && this.numBytesLoaded < this.totalBytes) return;
    this.lastDrawAt = t;
    const fraction = this.totalBytes > 0 ? Math.min(this.numBytesLoaded / this.totalBytes, 1) : 1;
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = '#'.repeat(filled) + '-'.repeat(BAR_WIDTH - filled);
    const pct = `${Math.floor(fraction * 100)}`.padStart(3);
    const mb = `${(this.numBytesLoaded / 1e6).toFixed(1)}/${(this.totalBytes / 1e6).toFixed(1)} MB`;
    this.stream.write(`\r${this.label} [${bar}] ${pct}% ${mb} ${tensorName}\x1b[K`);
  }

  finish(): void {
    const seconds = (this.now() - this.startedAt) / 1000;
    this.summary = formatLoadSummary(this.numLayers, this.numBytesLoaded, seconds);
    this.stream.write(`${this.stream.isTTY ? '\r\x1b[K' : ''}${this.label} ${this.summary}\n`);
  }
}
