/**
 * Training progress for people: a progress bar on a terminal, one line per epoch otherwise
 * (logs, CI). The training loop only talks to the `Reporter` interface.
 */
import cliProgress from 'cli-progress';

export interface StepInfo {
  epoch: number;
  step: number;
  stepsPerEpoch: number;
  loss: number;
  tau: number;
}

export interface EpochLine {
  epoch: number;
  epochs: number;
  loss: number;
  tau: number;
  seconds: number;
  /** Per task: validation accuracy under the soft mixture and the hard order, and order entropy. */
  tasks: Record<string, { valSoft: number; valHard: number; entropy: number; order: string }>;
  best: boolean;
}

export interface Reporter {
  begin(o: { epochs: number; stepsPerEpoch: number; tasks: string[]; startEpoch: number }): void;
  step(s: StepInfo): void;
  epoch(e: EpochLine): void;
  end(): void;
  log(message: string): void;
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

/** One line summarising an epoch. */
function formatEpoch(e: EpochLine): string {
  const tasks = Object.entries(e.tasks)
    .map(([n, t]) => `${n} ${pct(t.valSoft)}/${pct(t.valHard)} H=${t.entropy.toFixed(2)} [${t.order}]`)
    .join('  ');
  return `epoch ${e.epoch}/${e.epochs}  loss ${e.loss.toFixed(4)}  tau ${e.tau.toFixed(3)}  ${e.seconds.toFixed(1)}s  val soft/hard: ${tasks}${e.best ? '  *best' : ''}`;
}

/** Writes nothing (library use, tests). */
export const silentReporter: Reporter = { begin() {}, step() {}, epoch() {}, end() {}, log() {} };

/** A bar on a TTY, plain lines otherwise; messages go to `stream` (stderr by default). */
export function consoleReporter(stream: NodeJS.WriteStream = process.stderr): Reporter {
  const tty = Boolean(stream.isTTY) && !process.env.CI;
  let bar: cliProgress.SingleBar | undefined;
  let epochs = 0;
  return {
    begin(o) {
      epochs = o.epochs;
      stream.write(`training ${o.tasks.length} task(s) [${o.tasks.join(', ')}] for ${o.epochs} epochs x ${o.stepsPerEpoch} steps\n`);
      if (tty) {
        bar = new cliProgress.SingleBar(
          { stream, format: 'epoch {epoch}/{epochs} |{bar}| {value}/{total} steps  loss {loss}  tau {tau}  eta {eta_formatted}', hideCursor: true, clearOnComplete: true },
          cliProgress.Presets.shades_classic,
        );
      }
    },
    step(s) {
      if (!bar) return;
      if (s.step === 1) bar.start(s.stepsPerEpoch, 0, { epoch: s.epoch, epochs, loss: '-', tau: '-' });
      bar.update(s.step, { epoch: s.epoch, epochs, loss: s.loss.toFixed(4), tau: s.tau.toFixed(3) });
    },
    epoch(e) {
      bar?.stop();
      stream.write(formatEpoch(e) + '\n');
    },
    end() {
      bar?.stop();
    },
    log(message) {
      stream.write(message + '\n');
    },
  };
}
