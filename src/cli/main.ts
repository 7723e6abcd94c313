/** The `compnet` command line. */
import { Command, InvalidArgumentError } from 'commander';
import { LIBRARY_VERSION } from '../version.js';
import { demoCommand, evalCommand, summaryCommand, trainCommand } from './commands.js';
import { inspectCommand } from './inspectCommand.js';
import { transferCommand } from './transferCommand.js';
import { adaptCommand } from './adaptCommand.js';
import { predictCommand } from './predictCommand.js';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  return n;
};

const program = new Command()
  .name('compnet')
  .description('Compositional neural networks: one shared pool of residual blocks, a learned computation order per task.')
  .version(LIBRARY_VERSION)
  .showHelpAfterError();

program
  .command('demo')
  .description('train three tasks (MNIST, Fashion-MNIST, USPS; built-in data) over one pool, print accuracies, orders and parameters, save the model')
  .option('-o, --out <dir>', 'where to save the model', 'compnet-demo-model')
  .option('--epochs <n>', 'training epochs', int('--epochs'))
  .option('--limit <n>', 'use at most n training and n test images per task (quick runs)', int('--limit'))
  .option('--seed <n>', 'seed for initialisation and batch order', int('--seed'))
  .action((o) => demoCommand(o));

program
  .command('train')
  .description('multi-task training from a JSON config (see README: config format)')
  .requiredOption('-c, --config <file>', 'config file')
  .option('-o, --out <dir>', 'where to save the model', 'compnet-model')
  .option('--resume', 'continue from <out>/checkpoint after an interruption')
  .action((o) => trainCommand(o));

program
  .command('eval')
  .description("evaluate a saved model on each task's recorded test data: soft and hard accuracy, order entropy")
  .argument('<model>', 'model directory')
  .option('-t, --task <name...>', 'only these tasks')
  .option('--threads <n>', 'intra-op threads', int('--threads'))
  .action((dir, o) => evalCommand(dir, o));

program
  .command('transfer')
  .description('learn a new task over the frozen stem and pool of a saved model: its order, head and optionally its batch-norm patch')
  .argument('<model>', 'model directory')
  .requiredOption('-t, --task <file>', 'JSON task file: a task entry as in a config, or {"task": {...}, "train": {...}}')
  .requiredOption('--train <parts>', 'what to train: order,head | order,patch,head | patch,head | head | all (full fine-tune of a copy)')
  .option('-o, --out <dir>', 'where to save the model with the new task (default: in place; required for --train all)')
  .option('--init <how>', 'initial order: select (best existing task order on held-out data; default) | random | task:NAME')
  .option('--order-search', 'learn the order by a greedy search over single-step block swaps scored on held-out data, instead of by gradient')
  .option('--min-steps <n>', "at least this many optimizer steps: raises the task file's epochs for a small dataset", int('--min-steps'))
  .action((model, o) => transferCommand(model, o));

program
  .command('adapt')
  .description("adapt to an unlabelled domain: a new task on the source domains' shared head; only its order is learned (stem, pool, head and sources stay frozen) and its batch-norm statistics are re-estimated on target images")
  .argument('<model>', 'model directory')
  .requiredOption('-t, --target <file>', 'JSON task file for the target domain: a task entry as in a config, or {"task": {...}, "train": {...}}')
  .option('--objective <name>', 'infomax (default) | entropy | select (no gradient: best source order or blend by infomax on target images)')
  .option('-o, --out <dir>', 'where to save the model with the target task (default: in place)')
  .option('--labels', "the target file's labels are real: report target accuracy (never used for training or selection)")
  .option('--sources <tasks>', 'comma-separated source tasks sharing one head (default: the tasks that share a head)')
  .option('--freeze-order', 'statistics only: keep the initial order and re-estimate batch-norm statistics (AdaBN-like baseline)')
  .option('--init <how>', 'initial order for infomax/entropy: mean (mean of the sources; default) | select')
  .action((model, o) => adaptCommand(model, o));

program
  .command('predict')
  .description("classify images with a saved model's task: image files, folders (PNG/JPEG, recursively) or IDX files; one line per image (file, label, probability), preprocessed as the task was trained")
  .argument('<model>', 'model directory')
  .argument('<input...>', 'image files, folders or IDX image files')
  .option('-t, --task <name>', 'the task to run (may be omitted when the model has one task)')
  .option('--all-tasks', 'run every task of the model on each image')
  .option('--top <k>', 'print the k most probable classes', int('--top'), 1)
  .option('--json', 'write JSON lines: {file, index (IDX only), task, label, probability, top}')
  .option('--batch <n>', 'images per forward pass', int('--batch'), 256)
  .option('--threads <n>', 'intra-op threads', int('--threads'))
  .action((model, inputs, o) => predictCommand(model, inputs, o));

program
  .command('summary')
  .description('parameters (shared vs per task) and FLOPs per component and per task of a saved model')
  .argument('<model>', 'model directory')
  .action((dir) => summaryCommand(dir));

program
  .command('inspect')
  .description("a saved model's computation orders: per task the mixing matrix, hard order and per-step entropy; block usage; task-by-task order similarity. --out writes orders.json, SVG/PNG pictures and index.html")
  .argument('<model>', 'model directory')
  .option('-o, --out <dir>', 'also write the report (orders.json, pictures, index.html) to this directory')
  .action((dir, o) => inspectCommand(dir, o));

try {
  await program.parseAsync(process.argv);
} catch (e) {
  process.stderr.write(`compnet: ${(e as Error).message}\n`);
  if (process.env.COMPNET_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
}
