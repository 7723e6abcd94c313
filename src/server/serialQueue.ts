/**
 * Runs jobs one at a time, in the order they were queued. The viewer's jobs borrow the loaded
 * network (a temporary task, recalibrated statistics, a save that writes every file): two of them
 * interleaved at an `await` would see each other's temporary state, so every job that touches the
 * network goes through one queue per model.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #waiting = 0;

  /** Jobs queued or running. */
  get size(): number {
    return this.#waiting;
  }

  /** Queues `job`; the result settles with the job's own result or error (a failure does not stop the queue). */
  run<T>(job: () => T | Promise<T>): Promise<T> {
    this.#waiting++;
    const result = this.#tail.then(job).finally(() => this.#waiting--);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
