/**
 * Checks for data that loads without error but trains or tests something other than what the user
 * meant: each names the config field that decides it. The loader calls them; a refusal throws, a
 * warning goes to the loader's `warn`.
 *
 * - labels far outside the class range: IDX class names are "0".."max label", so one stray label
 *   (255 among 0..9) makes a 256-class head (refused unless `classes` picks the classes);
 * - a test split missing classes the training split has (its accuracy says nothing about them);
 * - images of different sizes or colour in one folder, all fitted to one input size;
 * - input sizes below 8 pixels, too small for the stem and blocks to see any structure.
 */
import type { RawImage } from './images.js';

/** Where a check's warnings go. */
export type Warn = (message: string) => void;

/** Smallest input side that is not warned about: the stem halves it, so 8 gives the blocks 4x4. */
const MIN_INPUT_SIZE = 8;

const list = (xs: (string | number)[], most = 8) => (xs.length > most ? `${xs.slice(0, most).join(', ')}, … (${xs.length} in all)` : xs.join(', '));

/**
 * Labels of an IDX source whose class names are "0".."max": refuses when fewer than half of the
 * class indices occur (a stray label such as 255), warns when some do not occur at all.
 */
export function checkLabelRange(source: string, labels: Int32Array[], classes: number, warn: Warn): void {
  const seen = new Uint8Array(classes);
  for (const ls of labels) for (const l of ls) seen[l] = 1;
  const unused: number[] = [];
  seen.forEach((s, i) => s || unused.push(i));
  if (unused.length === 0) return;
  const used = classes - unused.length;
  if (used * 2 < classes)
    throw new Error(
      `${source}: the largest label is ${classes - 1}, so the task would have ${classes} classes, but only ${used} distinct labels occur; ` +
        `fix the labels, or pick the classes with the task's \`classes\` field`,
    );
  warn(`${source}: no image has label ${list(unused)}: the task still has ${classes} classes (labels 0..${classes - 1}); pick the classes with the task's \`classes\` field`);
}

/** Warns, naming `field`, when the test split lacks classes that the training split has. */
export function checkTestClasses(task: string, classNames: string[], train: Int32Array, test: Int32Array, field: string, warn: Warn): void {
  if (test.length === 0) return;
  const inTest = new Set(test);
  const missing = [...new Set(train)].filter((c) => !inTest.has(c)).sort((a, b) => a - b);
  if (missing.length === 0) return;
  warn(
    `task "${task}": the test split has no images of ${missing.length} of the ${new Set(train).size} trained classes (${list(missing.map((c) => classNames[c]!))}), ` +
      `so its accuracy says nothing about them; check ${field}`,
  );
}

/**
 * Warns when one folder's images differ in size or colour: each is fitted to `size` x `size` by
 * `fit`, so a 1x1 or a 300x1 image among 28x28 ones is almost certainly a mistake.
 */
export function checkImageSizes(dir: string, images: RawImage[], files: string[], size: number, fit: string, warn: Warn): void {
  const kinds = new Map<string, { count: number; file: string }>();
  images.forEach((im, i) => {
    const key = `${im.width}x${im.height} ${im.channels === 1 ? 'grey' : 'colour'}`;
    const k = kinds.get(key);
    if (k) k.count++;
    else kinds.set(key, { count: 1, file: files[i]! });
  });
  if (kinds.size <= 1) return;
  const sorted = [...kinds.entries()].sort((a, b) => b[1].count - a[1].count);
  const described = sorted.map(([key, k], i) => `${key}: ${k.count}${i > 0 ? ` (e.g. ${k.file})` : ''}`);
  warn(`${dir}: images of ${kinds.size} sizes or colours (${list(described, 4)}); each is fitted to ${size}x${size} (the task's \`fit\`: ${fit})`);
}

/** Warns, naming the field, when the input side is below `MIN_INPUT_SIZE`. */
export function checkInputSize(task: string, size: number, warn: Warn): void {
  if (size < MIN_INPUT_SIZE)
    warn(`task "${task}": input size ${size} is below ${MIN_INPUT_SIZE}: images are fitted to ${size}x${size} pixels and the stem halves that again, too small to learn from; raise \`inputSize\``);
}
