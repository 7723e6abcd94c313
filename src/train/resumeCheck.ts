/**
 * Whether a checkpoint may be resumed with the config given now. A resumed run is only worth
 * something if it ends as the interrupted run would have, so every change that alters the result
 * (the model, the data, the seeds, any optimisation setting) is refused, naming the fields. Two
 * changes are allowed and said: more or fewer epochs (the run is extended or cut, as long as the
 * new count is past the epochs already done) and the thread count (speed only).
 */

/** The facts of a run that decide its result: what a checkpoint records and a resume compares. */
export interface RunRecord {
  model: unknown;
  seed: number;
  train: Record<string, unknown> & { epochs: number };
  /** Per task name: its entry with paths made absolute and the input size it is fitted to. */
  tasks: Record<string, unknown>;
}

export interface ResumeCheck {
  /** Lines to log (allowed changes). */
  notes: string[];
}

/** Fields whose change does not alter the result. */
const HARMLESS = new Set(['train.threads']);

const show = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Every leaf path where `a` and `b` differ, with both values. A field set on one side only is
 * followed into its sub-fields (`tasks.a.limit.train`), except a whole task added or removed.
 */
function differences(a: unknown, b: unknown, path: string[], out: { path: string; was: unknown; now: unknown }[]): void {
  const wholeTask = path.length === 2 && path[0] === 'tasks';
  const follow = (isObj(a) && isObj(b)) || (!wholeTask && ((a === undefined && isObj(b)) || (b === undefined && isObj(a))));
  if (follow) {
    const x = (a ?? {}) as Record<string, unknown>;
    const y = (b ?? {}) as Record<string, unknown>;
    for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) differences(x[k], y[k], [...path, k], out);
    return;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path: path.join('.'), was: a, now: b });
}

/**
 * Compares the recorded run with the given one; throws an error naming every refused field and
 * how to go on, or returns the notes for the allowed changes. `completed`: epochs the checkpoint
 * has done; `where`: the checkpoint folder, for messages.
 */
export function checkResume(recorded: RunRecord, given: RunRecord, completed: number, where: string): ResumeCheck {
  const diffs: { path: string; was: unknown; now: unknown }[] = [];
  differences(recorded, given, [], diffs);
  const notes: string[] = [];
  const refused: string[] = [];
  for (const d of diffs) {
    const change = `${d.path} (${show(d.was)} → ${show(d.now)})`;
    if (HARMLESS.has(d.path)) notes.push(`${change}: speed only, the result is the same up to float rounding`);
    else if (d.path === 'train.epochs') {
      const now = d.now as number;
      if (now <= completed) refused.push(`${change}: the checkpoint has already completed ${completed} epochs`);
      else
        notes.push(`${change}: the run ${now > (d.was as number) ? 'is extended' : 'ends early'} at epoch ${now}; the temperature and learning-rate schedules follow the new length from epoch ${completed + 1} on, so the result differs from an uninterrupted run of either length`);
    } else refused.push(change);
  }
  if (refused.length)
    throw new Error(
      `--resume: the checkpoint in ${where} was trained with another config, and these changes alter the result: ${refused.join('; ')}. ` +
        `Resume with the config it was started with, or start over: run without --resume (the checkpoint is replaced) or give another --out`,
    );
  return { notes };
}
