"""PyTorch peer: fixed-arch 5-cell NB201 stage fwd+bwd (grads wrt weights and input), 2 threads."""
import sys, time, json
import numpy as np
import torch, torch.nn as nn
torch.set_num_threads(2)
EDGES = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
ARCHS = {"conv3": (3, 3, 3, 3, 3, 3), "mixed": (3, 3, 4, 1, 3, 2), "skipnone": (1, 0, 1, 0, 1, 0)}

def rcb(C, k):
    return nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, k, padding=(k - 1) // 2, bias=False),
                         nn.BatchNorm2d(C, affine=False, track_running_stats=False))

class Cell(nn.Module):
    def __init__(self, C, arch):
        super().__init__(); self.arch = arch
        self.ops = nn.ModuleList()
        for op in arch:
            self.ops.append({0: nn.Identity(), 1: nn.Identity(), 2: rcb(C, 1), 3: rcb(C, 3),
                             4: nn.AvgPool2d(3, 1, 1, count_include_pad=False)}[op])
    def forward(self, x):
        nodes = [x]
        for i in range(1, 4):
            acc = 0
            for e, (ii, j) in enumerate(EDGES):
                if ii == i and self.arch[e] != 0:
                    acc = acc + self.ops[e](nodes[j])
            if not torch.is_tensor(acc):
                acc = torch.zeros_like(x)
            nodes.append(acc)
        return nodes[3]

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
out = sys.argv[2] if len(sys.argv) > 2 else ""
res = []
models = {}
for an, a in ARCHS.items():
    for cl in (False, True):
        m = nn.Sequential(*[Cell(16, a) for _ in range(5)])
        if cl: m = m.to(memory_format=torch.channels_last)
        x = torch.randn(64, 16, 32, 32)
        if cl: x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        r = torch.randn(64, 16, 32, 32)
        models[(an, cl)] = (m, x, r)
def step(m, x, r):
    m.zero_grad(); x.grad = None
    (m(x) * r).sum().backward()
for k, v in models.items(): step(*v); step(*v)
T = {k: [] for k in models}
for i in range(reps):
    for k in np.random.default_rng(i).permutation(len(models)):
        k = list(models)[k]
        t = time.perf_counter(); step(*models[k]); T[k].append(time.perf_counter() - t)
for k, v in T.items():
    name = "torch_channels_last" if k[1] else "torch_nchw"
    print(f"{name:24s} {k[0]:9s} median {np.median(v)*1e3:8.1f} ms  min {min(v)*1e3:8.1f}", flush=True)
    res.append(dict(cand=name, arch=k[0], ms=float(np.median(v)) * 1e3, min_ms=min(v) * 1e3, compile_s=0.0))
if out:
    with open(out, "a") as fh:
        for d in res: fh.write(json.dumps(d) + "\n")
