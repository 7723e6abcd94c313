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


def train_step(model, opt, x, y):
    out = model(x)
    loss = F.cross_entropy(out, y)
    value = loss.item()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return value


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
    p.add_argument('--part', default='reference', choices=['reference', 'frozen', 'profile', 'adam', 'ablations'])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--steps', type=int, default=30)
    p.add_argument('--infer-warmup', dest='infer_warmup', type=int, default=3)
    p.add_argument('--infer', type=int, default=30)
    p.add_argument('--adam', choices=['single', 'foreach'], default='single')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {'reference': part_reference, 'frozen': part_frozen, 'profile': part_profile, 'adam': part_adam,
     'ablations': part_ablations}[args.part](args)


if __name__ == '__main__':
    main()
