/**
 * Progress on stderr for long steps (convert, -o): a status line with the elapsed time, redrawn
 * every 200 ms — only on a terminal, never when piped or with --quiet/--json. (A percentage would
 * need the converter to report its position: wrapping its source device would hide the qcow2
 * backing chain it looks through, so it is not done here.)
 */

/** Prints `label… 3.2 s` every 200 ms while `work` runs, when `enabled`. */
export async function withProgress<T>(
  enabled: boolean,
  label: string,
  write: (text: string) => void,
  work: () => Promise<T>,
): Promise<T> {
  if (!enabled) return work();
  const t0 = performance.now();
  const draw = () => write(`\r${label}… ${((performance.now() - t0) / 1000).toFixed(1)} s\x1b[K`);
  const timer = setInterval(draw, 200);
  try {
    return await work();
  } finally {
    clearInterval(timer);
    write("\r\x1b[K");
  }
}
