/**
 * Self-organisation, quantified (issue 7): on demo models (MNIST, Fashion-MNIST, USPS trained
 * jointly), how close orders are to one-hot, how many distinct blocks each task uses, whether
 * blocks are reused within a task, and whether tasks of one family (the two digit datasets)
 * share more of their orders than unrelated ones.
 *
 * `npm run experiment -- organisation [--seeds N] [--models dir1,dir2,...]`: without `--models`,
 * trains the demo per seed into `runs/organisation/seed-K` (reused when present).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { trainFromConfig, demoConfig, inspectModel, writeInspectReport, table } from '../src/index.js';
import { parseArgs, mean, std, machine, writeResults, log } from './lib.js';

const FAMILY: Record<string, string> = { mnist: 'digits', usps: 'digits', fashion: 'clothing' };
const f2 = (xs: number[], d = 2) => `${mean(xs).toFixed(d)} ± ${std(xs).toFixed(d)}`;

export async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const i = argv.indexOf('--models');
  let models: string[];
  if (i >= 0) models = argv[i + 1]!.split(',');
  else {
    models = [];
    for (const seed of args.seeds) {
      const dir = new URL(`../runs/organisation/seed-${seed}`, import.meta.url).pathname;
      if (!existsSync(join(dir, 'manifest.json'))) {
        log(`training the demo model for seed ${seed} into ${dir}`);
        const r = await trainFromConfig(demoConfig({ seed, ...(args.quick ? { epochs: 1, limit: 500 } : {}) }), 'demo.json', { out: dir });
        r.net.dispose();
      }
      models.push(dir);
    }
  }
  const perModel = models.map((dir) => {
    const { inspection: ins } = inspectModel(dir);
    const tasks = ins.tasks.map((t) => ({
      name: t.name,
      entropy: t.meanEntropy,
      distinct: t.usage.filter((u) => u > 0).length,
      reusedSteps: ins.steps - t.usage.filter((u) => u > 0).length,
      order: t.order,
      hard: t.test?.hard,
      moved: t.test?.changedSteps,
    }));
    const names = ins.similarity.tasks;
    const same: number[] = [];
    const cross: number[] = [];
    const sameCos: number[] = [];
    const crossCos: number[] = [];
    for (let a = 0; a < names.length; a++)
      for (let b = a + 1; b < names.length; b++) {
        const fa = FAMILY[names[a]!];
        const fb = FAMILY[names[b]!];
        if (!fa || !fb) continue;
        (fa === fb ? same : cross).push(ins.similarity.agreement[a]![b]!);
        (fa === fb ? sameCos : crossCos).push(ins.similarity.cosine[a]![b]!);
      }
    return { dir, steps: ins.steps, blocks: ins.blocks, tasks, agreement: ins.similarity.agreement, names, same: mean(same), cross: mean(cross), sameCos: mean(sameCos), crossCos: mean(crossCos), usage: ins.usage.total };
  });
  // Pictures of the first model.
  const pics = new URL('../results/organisation/', import.meta.url).pathname;
  writeInspectReport(pics, inspectModel(models[0]!), models[0]!);

  const taskNames = perModel[0]!.tasks.map((t) => t.name);
  const rows = taskNames.map((n) => {
    const ts = perModel.map((m) => m.tasks.find((t) => t.name === n)!);
    return [n, FAMILY[n] ?? '-', f2(ts.map((t) => t.entropy), 3), f2(ts.map((t) => t.distinct), 1), f2(ts.map((t) => t.reusedSteps), 1), ts.map((t) => t.order).join(' / ')];
  });
  const m0 = perModel[0]!;
  const simRows = m0.names.map((a, r) => [a, ...m0.agreement[r]!.map((v) => v.toFixed(2))]);
  const command = `npm run experiment -- organisation${argv.length ? ' ' + argv.join(' ') : ''}`;
  const md = [
    '# Self-organisation of computation orders (demo model: MNIST, Fashion-MNIST, USPS)',
    '',
    `Command: \`${command}\`  `,
    `Machine: ${machine()}  `,
    `Models: ${models.length} (${models.join(', ')}), each a joint training of the three tasks over one pool of ${m0.blocks} blocks with L = ${m0.steps} steps (the \`compnet demo\` configuration, seeds ${args.seeds.join(', ')}). Values are mean ± std over the models.`,
    '',
    '## Per task',
    '',
    table(['task', 'family', 'mean step entropy (nats)', 'distinct blocks used', 'steps reusing a block', 'hard orders (one per model)'], rows, { markdown: true }),
    '',
    `Uniform mixing would have entropy ln ${m0.blocks} = ${Math.log(m0.blocks).toFixed(3)} nats; 0 is one-hot.`,
    '',
    '## Do related tasks share more of their orders?',
    '',
    'Agreement = fraction of steps at which two tasks choose the same block; cosine = similarity of the flattened mixing weights.',
    '',
    table(
      ['pairs', 'agreement', 'cosine'],
      [
        ['same family (mnist–usps)', f2(perModel.map((m) => m.same)), f2(perModel.map((m) => m.sameCos))],
        ['different families (x–fashion)', f2(perModel.map((m) => m.cross)), f2(perModel.map((m) => m.crossCos))],
      ],
      { markdown: true },
    ),
    '',
    `Two independent random orders agree on 1/N = ${(1 / m0.blocks).toFixed(2)} of their steps. Each task's order starts random (\`orderInit: random\`) and moved on ` +
      `${f2(perModel.flatMap((m) => m.tasks.map((t) => t.moved ?? NaN)).filter((v) => !Number.isNaN(v)), 1)} of ${m0.steps} steps during training, so agreement near chance says the ` +
      'tasks did not converge to shared orders; a family effect would have to show as agreement clearly above chance for mnist–usps only.',
    '',
    `Agreement matrix of the first model:`,
    '',
    table(['', ...m0.names], simRows, { markdown: true }),
    '',
    'Pictures of the first model: [heat maps](organisation/heatmaps.png), [block usage](organisation/usage.png), [similarity](organisation/similarity.png), ' +
      m0.names.map((n) => `[${n} over training](organisation/history-${n}.png)`).join(', ') + ', [report](organisation/index.html).',
  ].join('\n');
  writeResults('organisation', md, { command, machine: machine(), models: perModel });
}
