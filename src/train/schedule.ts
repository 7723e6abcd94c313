/** Schedules over training progress `p` in [0, 1]: temperature annealing and learning-rate decay. */

/**
 * Temperature: geometric from `start` to `min` over the first `fraction` of training, then held.
 * Geometric, because the logits' effective sharpness is `1/tau` and halving matters equally at
 * every scale.
 */
export function temperature(p: number, start: number, min: number, fraction: number): number {
  if (fraction <= 0) return min;
  const q = Math.min(1, p / fraction);
  return start * Math.pow(min / start, q);
}

/** How learning rates decay over training (see `LoopSettings.lrSchedule`). */
export type LrSchedule = 'cosine' | 'exponential';

/** The learning-rate multiplier at progress `p` in [0, 1], after `step` optimizer steps. */
export function lrMultiplier(schedule: LrSchedule, p: number, step: number): number {
  // The authors' Keras ExponentialDecay(decay_steps = 1500, rate = 0.99), not staircased.
  return schedule === 'exponential' ? Math.pow(0.99, step / 1500) : cosineDecay(p);
}

/** Cosine decay from 1 to `floor` (a multiplier for a group's base learning rate). */
function cosineDecay(p: number, floor = 0.05): number {
  return floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, Math.max(0, p))));
}
