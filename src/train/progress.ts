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

/**
 * What the console shows of the parts that may not be trained: the temperature (constant 1 under
 * `mixture`, and meaningless when no order trains) and each task's order entropy and hard order
 * (fixed when the order is not trained). Nothing is printed for a part that does not change.
 */
export interface ConsoleView {
  /** Show the temperature (default true). */
  tau?: boolean;
  /** Show each task's order entropy and hard order (default true). */
  order?: boolean;
}

/** One line summarising an epoch; a line without task accuracies (unlabelled data) has no `val` part. */
export function formatEpoch(e: EpochLine, view: ConsoleView = {}): string {
  const order = view.order ?? true;
  const tasks = Object.entries(e.tasks)
    .map(([n, t]) => `${n} ${pct(t.valSoft)}/${pct(t.valHard)}${order ? ` H=${t.entropy.toFixed(2)} [${t.order}]` : ''}`)
    .join('  ');
  const parts = [`epoch ${e.epoch}/${e.epochs}`, `loss ${e.loss.toFixed(4)}`, ...(view.tau ?? true ? [`tau ${e.tau.toFixed(3)}`] : []), `${e.seconds.toFixed(1)}s`, ...(tasks ? [`val soft/hard: ${tasks}`] : [])];
  return parts.join('  ') + (e.best ? '  *best' : '');
}

/** Writes nothing (library use, tests). */
export const silentReporter: Reporter = { begin() {}, step() {}, epoch() {}, end() {}, log() {} };

/** A console reporter whose view can be set once the model is known (before training starts). */
export interface ConsoleReporter extends Reporter {
  show(view: ConsoleView): void;
}

/** A bar on a TTY, plain lines otherwise; messages go to `stream` (stderr by default). */
export function consoleReporter(stream: NodeJS.WriteStream = process.stderr, initial: ConsoleView = {}): ConsoleReporter {
  const tty = Boolean(stream.isTTY) && !process.env.CI;
  let bar: cliProgress.SingleBar | undefined;
  let epochs = 0;
  let view: ConsoleView = { ...initial };
  return {
    show(v) {
      view = { ...view, ...v };
    },
    begin(o) {
      epochs = o.epochs;
      stream.write(`training ${o.tasks.length} task(s) [${o.tasks.join(', ')}] for ${o.epochs} epochs x ${o.stepsPerEpoch} steps\n`);
      if (tty) {
        const tau = view.tau ?? true ? '  tau {tau}' : '';
        bar = new cliProgress.SingleBar(
          { stream, format: `epoch {epoch}/{epochs} |{bar}| {value}/{total} steps  loss {loss}${tau}  eta {eta_formatted}`, hideCursor: true, clearOnComplete: true },
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
      stream.write(formatEpoch(e, view) + '\n');
    },
    end() {
      bar?.stop();
    },
    log(message) {
      // A message in the middle of an epoch (a phase's progress) must not be drawn over by the bar.
      bar?.stop();
      stream.write(message + '\n');
    },
  };
}

/**
 * What a run shows: the temperature only under `hard` (under `mixture` it is 1 throughout) and
 * only when an order trains by gradient; entropies and orders only when an order trains.
 */
export function viewFor(method: 'mixture' | 'hard', orderTrains: boolean): ConsoleView {
  return { tau: method === 'hard' && orderTrains, order: orderTrains };
}
