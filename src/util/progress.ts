import cliProgress from 'cli-progress';

/**
 * Progress of a long command (lab experiments, benchmarks) for a person at a terminal. Commands
 * report lines such as `trial 3/20: killed beta-lon-1, lost 5 of 300`; at a terminal a line with
 * `i/N` moves a progress bar (the line beside it) and the others are printed above it. Without a
 * terminal (a pipe, a file, CI) or with `--json` there is no bar: every line is printed as it is
 * (a benchmark's `--json` prints none). The bar never reaches output a program reads.
 */
export interface ProgressReporter {
  /** One line of progress. */
  say(line: string): void;
  /** Ends the bar (call once, when the command is done or failed). */
  done(): void;
}

export interface ProgressOptions {
  /** Print nothing (a benchmark's `--json`). */
  silent?: boolean | undefined;
  /** Plain lines even at a terminal (an experiment's `--json`: its lines still help a reader). */
  noBar?: boolean | undefined;
  /** Where progress goes (stderr): stdout stays the command's output. */
  stream?: NodeJS.WriteStream;
  /** Whether the command's output goes to a terminal too (default process.stdout). */
  stdoutIsTTY?: boolean;
  env?: NodeJS.ProcessEnv;
}

const STEP = /\b(\d+)\/(\d+)\b/;

export function progressReporter(o: ProgressOptions = {}): ProgressReporter {
  const stream = o.stream ?? process.stderr;
  if (o.silent) return { say: () => undefined, done: () => undefined };
  const env = o.env ?? process.env;
  const tty =
    !o.noBar && stream.isTTY === true && (o.stdoutIsTTY ?? process.stdout.isTTY === true) && !env.CI;
  if (!tty) return { say: (line) => void stream.write(`${line}\n`), done: () => undefined };
  const bars = new cliProgress.MultiBar(
    {
      stream,
      format: ' {bar} {value}/{total}  {line}',
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      // Lines longer than the terminal would wrap and break the redraw.
      linewrap: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let bar: cliProgress.SingleBar | undefined;
  return {
    say(line) {
      const step = STEP.exec(line);
      if (!step) {
        // Before any bar there is nothing to draw around: the line goes out as it is.
        if (bar === undefined) stream.write(`${line}\n`);
        else bars.log(`${line}\n`);
        return;
      }
      const [value, total] = [Number(step[1]), Number(step[2])];
      if (bar === undefined || bar.getTotal() !== total) {
        if (bar !== undefined) bars.remove(bar);
        bar = bars.create(total, 0, { line: '' });
      }
      // Each finished step is also kept above the bar, as without a terminal.
      bars.log(`${line}\n`);
      bar.update(value, { line });
    },
    done() {
      // A last redraw flushes the lines logged since the previous one (stop does not).
      bars.update();
      bars.stop();
    },
  };
}

/**
 * Runs `work` with a progress callback (undefined when `silent`, a benchmark's `--json`), and ends
 * the bar however it finishes.
 */
export async function withProgress<T>(
  silent: boolean | undefined,
  work: (progress: ((line: string) => void) | undefined) => Promise<T>,
): Promise<T> {
  const reporter = progressReporter({ silent });
  try {
    return await work(silent ? undefined : (line) => reporter.say(line));
  } finally {
    reporter.done();
  }
}
