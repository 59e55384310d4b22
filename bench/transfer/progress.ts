/**
 * The progress bar (cli-progress): one line on stderr, redrawn at most 10 times a second, only when
 * stderr is a terminal (pipes and CI logs stay clean). Work is counted in steps (rows, baseline runs); a
 * running step reports its own fraction so long rows move the bar too.
 *
 * @packageDocumentation
 */
import { SingleBar } from 'cli-progress';

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

/**
 * A bar drawn on a terminal stream by cli-progress. Elapsed time and ETA are ours (cli-progress
 * restarts its clock each time the bar is redrawn after {@link ProgressBar.clear}).
 */
export class ProgressBar implements Progress {
  readonly #bar: SingleBar;
  #total = 0;
  #done = 0;
  #fraction = 0;
  #label = '';
  #shown = false;
  readonly #started = Date.now();

  /** @param out - a TTY stream (stderr). */
  constructor(out: NodeJS.WriteStream) {
    this.#bar = new SingleBar({
      stream: out,
      format: '[{bar}] {percentage}%  {label}  ({done}/{steps}, {elapsed}, ETA {eta2})',
      barsize: 20,
      barCompleteChar: '#',
      barIncompleteChar: '.',
      fps: 10,
      hideCursor: false,
      clearOnComplete: true,
      linewrap: false,
    });
  }

  addTotal(n: number): void {
    this.#total += n;
  }

  begin(label: string): void {
    this.#label = label;
    this.#fraction = 0;
    this.#draw();
  }

  partial(fraction: number): void {
    this.#fraction = Math.max(0, Math.min(1, fraction));
    this.#draw();
  }

  end(): void {
    this.#done++;
    this.#fraction = 0;
    this.#draw();
  }

  clear(): void {
    if (this.#shown) this.#bar.stop();
    this.#shown = false;
  }

  finish(): void {
    this.clear();
  }

  #draw(): void {
    const total = Math.max(1, this.#total);
    const value = Math.min(total, this.#done + this.#fraction);
    const elapsed = (Date.now() - this.#started) / 1000;
    const f = value / total;
    const payload = {
      label: this.#label,
      done: this.#done,
      steps: this.#total,
      elapsed: fmtDuration(elapsed),
      eta2: fmtDuration(f > 0.02 ? (elapsed / f) * (1 - f) : NaN),
    };
    if (!this.#shown) {
      this.#bar.start(total, value, payload);
      this.#shown = true;
    } else {
      this.#bar.setTotal(total);
      this.#bar.update(value, payload);
    }
  }
}

/** A bar on stderr when it is a terminal and progress is wanted, else a silent one. */
export function progressFor(quiet: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  return !quiet && stream.isTTY === true ? new ProgressBar(stream) : SILENT_PROGRESS;
}
