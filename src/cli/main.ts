/** The `compnet` command line. */
import { Command, InvalidArgumentError } from 'commander';
import { LIBRARY_VERSION } from '../version.js';
import { demoCommand, evalCommand, removeTaskCommand, summaryCommand, trainCommand } from './commands.js';
import { inspectCommand } from './inspectCommand.js';
import { transferCommand } from './transferCommand.js';
import { adaptCommand } from './adaptCommand.js';
import { serveCommand, DEFAULT_PORT } from './serveCommand.js';
import { predictCommand } from './predictCommand.js';
import { exportCommand } from './exportCommand.js';

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
  .option('--method <name>', 'mixture (template mixing, the default) | hard (per-task patches, straight-through hard orders)')
  .action((o) => demoCommand(o));

program
  .command('train')
  .description('multi-task training from a JSON config (see README: config format)')
  .requiredOption('-c, --config <file>', 'config file')
  .option('-o, --out <dir>', 'where to save the model', 'compnet-model')
  .option('--resume', 'continue from <out>/checkpoint after an interruption')
  .option('--threads <n>', "intra-op threads (default: the config's train.threads; with --nproc, shared among the workers)", int('--threads'))
  .option('--nproc <k>', 'data parallel on this machine: k workers, each training on 1/k of every batch (gradients averaged over Gloo on loopback)', int('--nproc'))
  .option('--world-size <w>', 'data parallel over machines: the number of workers in all (start one per machine, each with its --rank)', int('--world-size'))
  .option('--rank <r>', 'data parallel over machines: this worker, 0..w-1 (rank 0 serves the rendezvous, writes checkpoints and saves the model)', int('--rank'))
  .option('--master <host:port>', "data parallel over machines: rank 0's address and a free port there, the same for every worker (Gloo's interface: $GLOO_SOCKET_IFNAME)")
  .option('--timeout <s>', 'data parallel: seconds any wait for the other workers may last before every worker fails (default 60)', int('--timeout'))
  .action((o) => trainCommand(o));

program
  .command('eval')
  .description("evaluate a saved model on each task's recorded test data, or one task on new labelled data (--data): soft and hard accuracy, order entropy")
  .argument('<model>', 'model directory')
  .option('-t, --task <name...>', 'only these tasks')
  .option('--data <path>', "new test data for the one task named by --task: a folder of class sub-folders (every image), or a JSON task file (its test split); standardised with the task's saved statistics")
  .option('--threads <n>', 'intra-op threads', int('--threads'))
  .action((dir, o) => evalCommand(dir, o));

program
  .command('transfer')
  .description('learn a new task over the frozen stem and pool of a saved model: its mixture, head and optionally its own batch-norm patch')
  .argument('<model>', 'model directory')
  .requiredOption('-t, --task <file>', 'JSON task file: a task entry as in a config, or {"task": {...}, "train": {...}}')
  .requiredOption('--train <parts>', "what to train: mixture,head | mixture,patch,head | mixture | patch,head | head | all (full fine-tune of a copy); 'order' is accepted for 'mixture'")
  .option('-o, --out <dir>', 'where to save the model with the new task (required unless --in-place)')
  .option('--in-place', 'replace the input model with the one holding the new task (atomically)')
  .option('--only-new-task', 'with --train all: save a model holding only the new task (the fine-tuned pool no longer fits the other tasks)')
  .option('--init <how>', "where the new task starts: select (the existing task whose mixture scores best on held-out data; default) | random | task:NAME; under mixture its head is copied too when the label counts agree")
  .option('--order-search', 'learn the order by a greedy search over single-step block swaps scored on held-out data, instead of by gradient')
  .option('--min-steps <n>', "at least this many optimizer steps: raises the task file's epochs for a small dataset", int('--min-steps'))
  .action((model, o) => transferCommand(model, o));

program
  .command('adapt')
  .description("adapt to an unlabelled domain: a new task on the source domains' shared head whose mixture alone adapts: jointly with source training by aligning its features (default when the sources' data is recorded), or from target images alone (--source-free)")
  .argument('<model>', 'model directory')
  .requiredOption('-t, --target <file>', 'JSON task file for the target domain: a task entry as in a config, or {"task": {...}, "train": {...}}')
  .option('--joint', "the authors' protocol: each step trains the network on the sources, then the target's mixture by an alignment loss (needs the sources' recorded data)")
  .option('--source-free', 'adapt from target images alone: everything frozen except the target mixture (and its statistics)')
  .option('--alignment <name>', 'joint: moments (moment matching of last-step features; default) | adversarial (a discriminator)')
  .option('--objective <name>', 'source-free: infomax (default) | entropy | select (no gradient: best source order or blend by infomax on target images)')
  .option('-o, --out <dir>', 'where to save the model with the target task (required unless --in-place)')
  .option('--in-place', 'replace the input model with the one holding the target task (atomically)')
  .option('--labels', "the target file's labels are real: report target accuracy (never used for training or selection)")
  .option('--sources <tasks>', 'comma-separated source tasks sharing one head (default: the tasks that share a head)')
  .option('--freeze-order', 'source-free, statistics only: keep the initial order and re-estimate batch-norm statistics (AdaBN-like baseline)')
  .option('--init <how>', 'source-free: initial order for infomax/entropy: mean (mean of the sources; default) | select')
  .action((model, o) => adaptCommand(model, o));

program
  .command('remove-task')
  .description('save a model without one task (and without its head if no other task uses it)')
  .argument('<model>', 'model directory')
  .argument('<name>', 'the task to remove')
  .option('-o, --out <dir>', 'where to save the model without the task (required unless --in-place)')
  .option('--in-place', 'replace the input model (atomically)')
  .action((model, name, o) => removeTaskCommand(model, name, o));

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
  .command('export')
  .description("write one task as one plain network for deployment: its mixture folded into ordinary convolutions (one block per step), batch norm folded, the task's input normalisation included; input NHWC images in [0, 1]")
  .argument('<model>', 'model directory')
  .option('-t, --task <name>', 'the task to export (may be omitted when the model has one task)')
  .option('-f, --format <format>', 'onnx | torchscript')
  .option('-o, --out <file>', 'the file to write')
  .option('--softmax', 'end with a softmax: output probabilities instead of logits')
  .action((model, o) => exportCommand(model, o));

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

program
  .command('serve')
  .description("a local web viewer: every task's mixture, its evolution over training, template usage and similarity; classify your own image; edit a mixture and see the accuracy change (Save as… adds the edit as a new task)")
  .argument('<model>', 'model directory')
  .option('-p, --port <n>', 'port (0: any free port)', int('--port'), DEFAULT_PORT)
  .option('--host <address>', 'address to listen on (default 127.0.0.1; any other address is reachable from other machines)')
  .option('--data', "load every task's recorded data at start, so the first edit is evaluated at once (default: on each task's first edit)")
  .action((model, o) => serveCommand(model, o));

try {
  await program.parseAsync(process.argv);
} catch (e) {
  process.stderr.write(`compnet: ${(e as Error).message}\n`);
  if (process.env.COMPNET_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
}
