/**
 * The one place the viewer takes recorded-data loading from: a saved task's `data` record
 * (source, seed, input size) reloads its splits. Kept as its own module so that when the loader
 * moves (to `src/data/record.ts`) only this line changes.
 */
export { loadRecordedData, type TaskDataRecord } from '../data/record.js';
