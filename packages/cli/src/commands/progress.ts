/**
 * Progress bars on stderr for long steps (convert, writing -o, large uploads, copy-in): percentage,
 * bytes done / total, rate and ETA, redrawn at most every REDRAW_MS and erased when the step ends.
 * The caller decides whether bars are allowed (a terminal, not --quiet/--json); when they are
 * not, `progressBar` hands out a no-op so the work runs exactly the same way.
 */

/** Progress of one step: bytes (or any unit) done out of a total. */
export interface StepProgress {
  update(done: number, total: number): void;
  /** The step ended: draw its final state (100% if it got there) and erase the line. */
  finish(): void;
}

/** Minimum time between two redraws (≤ 10 per second). */
export const REDRAW_MS = 100;
const BAR_CELLS = 24;

const noProgress: StepProgress = { update() {}, finish() {} };

export interface ProgressBarOptions {
  /** Clock in milliseconds (tests pass a fake one). */
  now?: () => number;
}

/** A bar for `label` written through `write`, or a no-op when `enabled` is false. */
export function progressBar(
  enabled: boolean,
  label: string,
  write: (text: string) => void,
  options: ProgressBarOptions = {},
): StepProgress {
  return enabled ? new ProgressBar(label, write, options.now ?? (() => performance.now())) : noProgress;
}

class ProgressBar implements StepProgress {
  private readonly t0: number;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private done = 0;
  private total = 0;
  private drawn = false;
  private finished = false;

  constructor(
    private readonly label: string,
    private readonly write: (text: string) => void,
    private readonly now: () => number,
  ) {
    this.t0 = now();
  }

  update(done: number, total: number): void {
    if (this.finished) return;
    // Never move backwards (a caller may report a smaller figure for a new sub-step).
    this.total = Math.max(0, total);
    this.done = Math.min(this.total, Math.max(this.done, done));
    const t = this.now();
    if (t - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = t;
    this.draw(t);
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.drawn) {
      if (this.total > 0 && this.done >= this.total) this.draw(this.now());
      this.write("\r\x1b[K");
    }
  }

  private draw(t: number): void {
    this.drawn = true;
    this.write(`\r${formatProgress(this.label, this.done, this.total, t - this.t0)}\x1b[K`);
  }
}

/** `label [#####·····]  42%  1.2/2.0 GiB  85 MiB/s  ETA 0:10` (no rate/ETA before any progress). */
export function formatProgress(label: string, done: number, total: number, elapsedMs: number): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const cells = Math.floor(frac * BAR_CELLS);
  const bar = `[${"#".repeat(cells)}${"·".repeat(BAR_CELLS - cells)}]`;
  const pct = `${String(Math.floor(frac * 100)).padStart(3)}%`;
  const parts = [label, bar, pct, `${formatBytes(done)}/${formatBytes(total)}`];
  const secs = elapsedMs / 1000;
  if (done > 0 && secs > 0) {
    const rate = done / secs;
    parts.push(`${formatBytes(rate)}/s`);
    if (done < total) parts.push(`ETA ${formatDuration((total - done) / rate)}`);
  }
  return parts.join("  ");
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${UNITS[u]}`;
}

function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Runs `work` with a bar fed by the callback it receives; the bar is erased however it ends. */
export async function withProgressBar<T>(
  enabled: boolean,
  label: string,
  write: (text: string) => void,
  work: (onProgress: (done: number, total: number) => void) => Promise<T>,
): Promise<T> {
  const bar = progressBar(enabled, label, write);
  try {
    return await work((d, t) => bar.update(d, t));
  } finally {
    bar.finish();
  }
}
