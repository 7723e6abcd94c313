#!/usr/bin/python3
"""PyTorch reference for compnet's benchmark (issue 4): the same network, written as a careful
PyTorch user would write it, timed the same way. One JSON line on stdout.

    /usr/bin/python3 bench/reference/torch_bench.py --part reference [--steps 30 ...]

Run it through `npm run bench` (bench/run.ts), which preloads jemalloc exactly as for compnet and
alternates the two implementations. Debian's python3-torch 1.13.1 (the same libtorch_cpu and oneDNN
that compnet links) is expected: call /usr/bin/python3, not a pyenv python without torch.

The network (`../shared/METHOD.md`, compnet's `block: inverted`): 3x3 stride-2 stem conv, BN, ReLU6;
8 inverted-residual blocks (1x1 C->4C, BN, ReLU6; 3x3 depthwise, BN, ReLU6; 1x1 4C->C, BN; residual
add); global average pool; linear 10; cross-entropy; Adam (lr 1e-3). Convolutions have no bias
(batch norm follows), as in compnet and torchvision's MobileNetV2.

Tuning: channels-last memory format for the model and the input, the same thread count as compnet
(torch.set_num_threads), jemalloc preloaded by the caller, in-place ReLU6 (as torchvision does),
zero_grad(set_to_none=True), torch.inference_mode() for inference, and the Adam implementation
(single-tensor or foreach) chosen by --adam (default: the faster one measured on this machine; see
BENCHMARKS.md).

`--part experiment` times a training step at the experiments' own shapes under template mixing
(issue 18; `EXPERIMENT` in bench/common.ts, `TemplateMixingNet` below).
"""
import argparse
import json
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def proc_status_bytes(field):
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return float('nan')


def jemalloc_loaded():
    try:
        with open('/proc/self/maps') as f:
            return 'jemalloc' in f.read()
    except OSError:
        return False


def summarize(xs):
    if not xs:
        return {'median': float('nan'), 'min': float('nan'), 'max': float('nan'), 'n': 0}
    s = sorted(xs)
    m = len(s) // 2
    median = s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2
    return {'median': median, 'min': s[0], 'max': s[-1], 'n': len(s)}


class InvertedResidual(nn.Module):
    def __init__(self, c, e, k, inplace=True):
        super().__init__()
        hidden = c * e
        self.branch = nn.Sequential(
            nn.Conv2d(c, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=inplace),
            nn.Conv2d(hidden, hidden, k, padding=k // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=inplace),
            nn.Conv2d(hidden, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x):
        return x + self.branch(x)


class Net(nn.Module):
    def __init__(self, cin=3, c=64, blocks=8, e=4, k=3, stride=2, classes=10, inplace=True):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(cin, c, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU6(inplace=inplace),
        )
        self.blocks = nn.Sequential(*[InvertedResidual(c, e, k, inplace) for _ in range(blocks)])
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return self.head(h.mean((2, 3)))


def build(args, inplace=True):
    torch.manual_seed(0)
    model = Net(inplace=inplace).to(memory_format=torch.channels_last)
    # Kaiming-normal (fan-out) conv init, as compnet initialises its pool.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out')
    foreach = {'single': False, 'foreach': True}[args.adam]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=foreach)
    torch.manual_seed(1)
    x = torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,))
    return model, opt, x, y


def optimize(loss, opt):
    """One backward and one optimizer step on `loss`; returns its value, read before the backward."""
    value = loss.item()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return value


def train_step(model, opt, x, y):
    return optimize(F.cross_entropy(model(x), y), opt)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def emit(part, result):
    base = {
        'impl': 'pytorch',
        'part': part,
        'threads': torch.get_num_threads(),
        'torch': torch.__version__,
        'jemalloc': jemalloc_loaded(),
        'python': platform.python_version(),
        'vmHWM': proc_status_bytes('VmHWM'),
        'vmRSS': proc_status_bytes('VmRSS'),
    }
    base.update(result)
    sys.stdout.write(json.dumps(base) + '\n')
    sys.stdout.flush()


def part_reference(args):
    rss_start = proc_status_bytes('VmRSS')
    model, opt, x, y = build(args)
    model.train()
    losses = [train_step(model, opt, x, y) for _ in range(args.warmup)]
    train = []
    for _ in range(args.steps):
        train.append(timed(lambda: losses.append(train_step(model, opt, x, y))))
    model.eval()

    def infer():
        with torch.inference_mode():
            model(x)

    for _ in range(args.infer_warmup):
        infer()
    inference = [timed(infer) for _ in range(args.infer)]
    emit('reference', {
        'rssStart': rss_start, 'adam': args.adam, 'train': train, 'inference': inference,
        'trainSummary': summarize(train), 'inferenceSummary': summarize(inference),
        'firstLoss': losses[0] if losses else None, 'lastLoss': losses[-1] if losses else None,
    })


def part_frozen(args):
    """Inference through TorchScript freezing (folds batch norm into the convolutions).

    Also checks the frozen outputs against eager mode: with Debian's libtorch 1.13.1 and oneDNN
    2.6.3, the frozen graph's prim::MKLDNNHardTanh_ leaves its input unchanged, so the ReLU6s are
    skipped and the logits are wrong (measured; see BENCHMARKS.md)."""
    model, _, x, _ = build(args)
    model.eval()
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(model)))
        for _ in range(args.infer_warmup + 2):
            frozen(x)
        eager = model(x)
        max_rel_err = ((frozen(x) - eager).abs().max() / eager.abs().max()).item()
        ops = sorted({n.kind() for n in frozen.graph.nodes() if 'Constant' not in n.kind()})

    def infer():
        with torch.no_grad():
            frozen(x)

    inference = [timed(infer) for _ in range(args.infer)]
    emit('frozen', {'inference': inference, 'inferenceSummary': summarize(inference), 'maxRelErrVsEager': max_rel_err, 'ops': ops})


def part_profile(args):
    """Self CPU time per aten op inside a training step and an inference pass (torch.profiler)."""
    from torch.profiler import profile, ProfilerActivity
    model, opt, x, y = build(args)
    model.train()
    for _ in range(args.warmup):
        train_step(model, opt, x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            train_step(model, opt, x, y)
    train_ops = {e.key: {'msPerStep': e.self_cpu_time_total / 1000.0 / args.steps, 'callsPerStep': e.count / args.steps}
                 for e in prof.key_averages() if e.self_cpu_time_total > 0}
    model.eval()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            with torch.inference_mode():
                model(x)
    infer_ops = {e.key: {'msPerStep': e.self_cpu_time_total / 1000.0 / args.steps, 'callsPerStep': e.count / args.steps}
                 for e in prof.key_averages() if e.self_cpu_time_total > 0}
    emit('profile', {'steps': args.steps, 'trainOps': train_ops, 'inferOps': infer_ops})


def part_adam(args):
    """Which Adam is faster here: time the optimizer step alone, both implementations, interleaved."""
    res = {}
    setups = {}
    for kind in ('single', 'foreach'):
        a = argparse.Namespace(**vars(args))
        a.adam = kind
        model, opt, x, y = build(a)
        out = F.cross_entropy(model(x), y)
        out.backward()
        setups[kind] = opt
        res[kind] = []
    for _ in range(3):
        for kind, opt in setups.items():
            for _ in range(2):
                opt.step()
            res[kind] += [timed(opt.step) for _ in range(args.steps)]
    emit('adam', {k: summarize(v) for k, v in res.items()})


# The experiments' shapes (issue 18): bench/common.ts's `EXPERIMENT`, which compnet's side reads.
EXPERIMENT_CHANNELS = 32
EXPERIMENT_SHAPES = {
    'e2': {'tasks': 4, 'blocks': 4, 'steps': 4},
    'e5': {'tasks': 1, 'blocks': 4, 'steps': 16},
}
# The experiments' optimizer: `trainDefaults('mixture')` in compnet (Adam, lr 2e-3 for the weights
# and the mixture logits alike, L2 weight decay 1e-4 on the weights only, as trainMultitask's groups).
EXPERIMENT_SETTINGS = {'lr': 2e-3, 'orderLr': 2e-3, 'weightDecay': 1e-4, 'optimizer': 'adam', 'mode': 'soft', 'tau': 1, 'entropyWeight': 0}


class TemplateMixingNet(nn.Module):
    """compnet's `mixture` method over a pool of N inverted-residual templates, T tasks, L steps.

    Shared: the stem conv (3x3, stride 2, no bias) and its batch norm's gamma/beta; per slot
    (1x1 expand C->4C, 3x3 depthwise, 1x1 project 4C->C; no conv biases) the N templates' conv
    weights, stacked [N, ...], and their batch norms' gamma/beta, stacked [N, width]. Per task t:
    mixture logits A_t [L, N] (Glorot-uniform on each [1, N] row, as compnet's `orderInit:
    'glorot'`), a linear head C->10, and the running statistics of every batch norm, the stem's
    and one per step and slot, [L, width] (compnet's task patch under `mixture`: statistics only;
    compnet keeps a second set per site for the hard order, which a soft training pass neither
    reads nor updates, so it is left out here).

    Step l of task t: xi = softmax(A_t[l]) over the templates; each slot's conv weight is
    sum_b xi[b] W_b and its batch norm's gamma and beta are sum_b xi[b] gamma_b and
    sum_b xi[b] beta_b (one matrix product per slot for all L steps, xi [L, N] @ [N, ...], as
    compnet's `Pool.mix` and `Pool.mixNorms`); batch norm in training mode on the task's batch,
    updating the task's statistics of that step; ReLU6 after the first two batch norms; residual
    add. Then global average pooling and the task's head."""

    def __init__(self, tasks, blocks, steps, c=EXPERIMENT_CHANNELS, e=4, k=3, cin=3, stride=2, classes=10):
        super().__init__()
        hidden = c * e
        self.steps, self.stride, self.k, self.hidden = steps, stride, k, hidden

        def kaiming(shape):  # one template; Kaiming-normal (fan-out), as compnet's pool
            return nn.init.kaiming_normal_(torch.empty(shape), mode='fan_out')

        self.stem = nn.Parameter(kaiming((c, cin, 3, 3)))
        self.stem_gamma = nn.Parameter(torch.ones(c))
        self.stem_beta = nn.Parameter(torch.zeros(c))
        shapes = [(hidden, c, 1, 1), (hidden, 1, k, k), (c, hidden, 1, 1)]
        widths = [hidden, hidden, c]
        self.templates = nn.ParameterList([nn.Parameter(torch.stack([kaiming(s) for _ in range(blocks)])) for s in shapes])
        self.gammas = nn.ParameterList([nn.Parameter(torch.ones(blocks, w)) for w in widths])
        self.betas = nn.ParameterList([nn.Parameter(torch.zeros(blocks, w)) for w in widths])
        bound = (6 / (1 + blocks)) ** 0.5
        self.logits = nn.ParameterList([nn.Parameter(torch.empty(steps, blocks).uniform_(-bound, bound)) for _ in range(tasks)])
        self.heads = nn.ModuleList([nn.Linear(c, classes) for _ in range(tasks)])
        self.register_buffer('stem_mean', torch.zeros(tasks, c))
        self.register_buffer('stem_var', torch.ones(tasks, c))
        for i, w in enumerate(widths):
            self.register_buffer(f'mean{i}', torch.zeros(tasks, steps, w))
            self.register_buffer(f'var{i}', torch.ones(tasks, steps, w))

    def forward(self, t, x):
        xi = self.logits[t].softmax(1)
        weights = [(xi @ w.flatten(1)).view(self.steps, *w.shape[1:]) for w in self.templates]
        gammas = [xi @ g for g in self.gammas]
        betas = [xi @ b for b in self.betas]

        def bn(h, i, l):
            return F.batch_norm(h, getattr(self, f'mean{i}')[t, l], getattr(self, f'var{i}')[t, l], gammas[i][l], betas[i][l], True, 0.1)

        h = F.conv2d(x, self.stem, stride=self.stride, padding=1)
        h = F.relu6(F.batch_norm(h, self.stem_mean[t], self.stem_var[t], self.stem_gamma, self.stem_beta, True, 0.1), inplace=True)
        for l in range(self.steps):
            f = F.relu6(bn(F.conv2d(h, weights[0][l]), 0, l), inplace=True)
            f = F.relu6(bn(F.conv2d(f, weights[1][l], padding=self.k // 2, groups=self.hidden), 1, l), inplace=True)
            h = h + bn(F.conv2d(f, weights[2][l]), 2, l)
        return self.heads[t](h.mean((2, 3)))


def build_experiment(shape, adam):
    """The shape's network, its Adam in the groups of compnet's training loop, one batch per task."""
    spec = EXPERIMENT_SHAPES[shape]
    torch.manual_seed(0)
    # Channels-last input and stem weight: every activation after it stays channels-last (the
    # stacked templates are 5-D, which `.to(memory_format=...)` rejects; a mixed weight is a view).
    model = TemplateMixingNet(spec['tasks'], spec['blocks'], spec['steps'])
    model.stem.data = model.stem.data.contiguous(memory_format=torch.channels_last)
    model.train()
    s = EXPERIMENT_SETTINGS
    logits = {id(p) for p in model.logits.parameters()}
    groups = [
        {'params': [p for p in model.parameters() if id(p) not in logits], 'lr': s['lr'], 'weight_decay': s['weightDecay']},
        {'params': list(model.logits.parameters()), 'lr': s['orderLr'], 'weight_decay': 0},
    ]
    opt = torch.optim.Adam(groups, foreach={'single': False, 'foreach': True}[adam])
    batches = []
    for t in range(spec['tasks']):
        torch.manual_seed(1 + t)
        batches.append((torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (64,))))
    return model, opt, batches


def experiment_step(model, opt, batches):
    """Every task's forward on its own batch, the cross-entropies summed, one backward, one Adam step.

    compnet's `trainStep` differs in one way that changes no FLOP and no gradient: it runs each
    task's backward right after that task's forward (gradients accumulate), so it holds one
    task's graph at a time where this holds all T; one `.item()` per task, here one per step."""
    return optimize(sum(F.cross_entropy(model(t, x), y) for t, (x, y) in enumerate(batches)), opt)


def part_experiment(args):
    """A training step at each experiment shape, the shapes interleaved round by round."""
    names = args.shapes.split(',')
    unknown = [n for n in names if n not in EXPERIMENT_SHAPES]
    if unknown:
        sys.exit(f"--shapes: unknown shape(s) {', '.join(unknown)} (have: {', '.join(EXPERIMENT_SHAPES)})")
    built = {n: build_experiment(n, args.adam) for n in names}
    times = {n: [] for n in names}
    losses = {n: [] for n in names}
    for _ in range(args.rounds):
        for n, (model, opt, batches) in built.items():
            for _ in range(args.warmup):
                losses[n].append(experiment_step(model, opt, batches))
            times[n] += [timed(lambda: losses[n].append(experiment_step(model, opt, batches))) for _ in range(args.steps)]
    emit('experiment', {
        'channels': EXPERIMENT_CHANNELS, 'batch': 64, 'adam': args.adam, 'shapes': {n: EXPERIMENT_SHAPES[n] for n in names},
        'settings': EXPERIMENT_SETTINGS, 'times': times, 'summaries': {n: summarize(v) for n, v in times.items()},
        'losses': {n: {'first': v[0] if v else None, 'last': v[-1] if v else None} for n, v in losses.items()},
    })


def part_ablations(args):
    """The reference written the way compnet's graph runs today, to explain the difference:
    'out-of-place' uses ReLU6(inplace=False) (compnet's relu6 allocates a new tensor);
    'out-of-place, kept' also keeps every intermediate alive until the step ends (compnet's `tidy`
    frees a scope's tensors only when it closes, where Python frees each one at its last use)."""
    variants = {}
    for name, inplace, keep in (('eager', True, False), ('out-of-place', False, False), ('out-of-place, kept', False, True)):
        model, opt, x, y = build(args, inplace=inplace)
        kept = []
        if keep:
            for mod in model.modules():
                if len(list(mod.children())) == 0:
                    mod.register_forward_hook(lambda _m, _i, out, kept=kept: kept.append(out))
        variants[name] = (model, opt, x, y, kept)
    train = {k: [] for k in variants}
    infer = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, (model, opt, x, y, kept) in variants.items():
            model.train()

            def step():
                train_step(model, opt, x, y)
                kept.clear()

            for _ in range(args.warmup):
                step()
            train[name] += [timed(step) for _ in range(args.steps)]
            model.eval()

            def inf():
                with torch.inference_mode():
                    model(x)
                kept.clear()

            for _ in range(args.infer_warmup):
                inf()
            infer[name] += [timed(inf) for _ in range(args.infer)]
    emit('ablations', {'train': {k: summarize(v) for k, v in train.items()}, 'inference': {k: summarize(v) for k, v in infer.items()}})


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--part', default='reference', choices=['reference', 'frozen', 'profile', 'adam', 'ablations', 'experiment'])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--steps', type=int, default=30)
    p.add_argument('--infer-warmup', dest='infer_warmup', type=int, default=3)
    p.add_argument('--infer', type=int, default=30)
    p.add_argument('--adam', choices=['single', 'foreach'], default='single')
    p.add_argument('--shapes', default=','.join(EXPERIMENT_SHAPES))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {'reference': part_reference, 'frozen': part_frozen, 'profile': part_profile, 'adam': part_adam,
     'ablations': part_ablations, 'experiment': part_experiment}[args.part](args)


if __name__ == '__main__':
    main()
