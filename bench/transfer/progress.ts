/**
 * The progress bar: one line on stderr, redrawn at most 10 times a second, only when stderr is a
 * terminal (pipes and CI logs stay clean). Work is counted in steps (rows, baseline runs); a
 * running step reports its own fraction so long rows move the bar too.
 *
 * @packageDocumentation
 */

/** What the bench reports its progress to. */
export interface Progress {
  /** Adds `n` steps to the total. */
  addTotal(n: number): void;
  /** Starts the next step, described by `label`. */
  begin(label: string): void;
  /** How far the current step is, 0..1. */
  partial(fraction: number): void;
  /** Finishes the current step. */
  end(): void;
  /** Erases the bar (before printing something else); the next update draws it again. */
  clear(): void;
  /** Erases the bar for good. */
  finish(): void;
}

/** A Progress that draws nothing. */
export const SILENT_PROGRESS: Progress = {
  addTotal: () => {},
  begin: () => {},
  partial: () => {},
  end: () => {},
  clear: () => {},
  finish: () => {},
};

function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--';
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
}

/** A bar drawn on a terminal stream. */
export class ProgressBar implements Progress {
  readonly #out: NodeJS.WriteStream;
  #total = 0;
  #done = 0;
  #fraction = 0;
  #label = '';
  #last = 0;
  #drawn = false;
  readonly #started = Date.now();

  /** @param out - a TTY stream (stderr). */
  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
  }

  addTotal(n: number): void {
    this.#total += n;
  }

  begin(label: string): void {
    this.#label = label;
    this.#fraction = 0;
    this.#draw(true);
  }

  partial(fraction: number): void {
    this.#fraction = Math.max(0, Math.min(1, fraction));
    this.#draw(false);
  }

  end(): void {
    this.#done++;
    this.#fraction = 0;
    this.#draw(false);
  }

  clear(): void {
    if (this.#drawn) this.#out.write('\r\x1b[K');
    this.#drawn = false;
  }

  finish(): void {
    this.clear();
  }

  #draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const total = Math.max(1, this.#total);
    const f = Math.min(1, (this.#done + this.#fraction) / total);
    const width = 20;
    const filled = Math.round(f * width);
    const elapsed = (now - this.#started) / 1000;
    const eta = f > 0.02 ? (elapsed / f) * (1 - f) : NaN;
    const cols = this.#out.columns ?? 100;
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(f * 100)).padStart(3)}%  ${this.#label}  (${this.#done}/${this.#total}, ${fmtDuration(elapsed)}, ETA ${fmtDuration(eta)})`;
    this.#out.write(`\r\x1b[K${line.slice(0, cols - 1)}`);
    this.#drawn = true;
  }
}

/** A bar on stderr when it is a terminal and progress is wanted, else a silent one. */
export function progressFor(quiet: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  return !quiet && stream.isTTY === true ? new ProgressBar(stream) : SILENT_PROGRESS;
}
