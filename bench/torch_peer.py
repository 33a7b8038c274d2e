"""PyTorch, the benchmarks' CPU peer (bench/torch-peer.ts runs this as a child process).

Measures, on PyTorch's CPU backend with one thread per core, the same workloads as our benches:
  conv   conv2d 3x3 64->64 pad 1 on 1x64x128x128: forward, backward data, backward weight (GFLOP/s)
  edsr   EDSR-baseline x4 forward on 1x3x64x64 and on 1x3x128x128 (ms)
  train  training steps/s (forward, L1 loss, backward, Adam) of the bench:train cases
and prints one JSON object. The networks are written here from their papers' definitions (EDSR: 3x3
convs, residual blocks conv-ReLU-conv with scale 1, sub-pixel upsampler; FSRCNN: 5x5 feature, 1x1
shrink, m 3x3 maps, 1x1 expand, 9x9 transposed deconv, PReLU) at the sizes our models use; weights are
random, since only time is measured.

Usage: python3 bench/torch_peer.py [conv,edsr,train]
"""
import json
import os
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F


def median_seconds(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def conv_gflops(runs=9):
    x = torch.randn(1, 64, 128, 128)
    w = torch.randn(64, 64, 3, 3)
    gy = torch.randn(1, 64, 128, 128)
    flops = 2 * 64 * 128 * 128 * 64 * 9
    fwd = median_seconds(lambda: F.conv2d(x, w, padding=1), runs)
    bwd_data = median_seconds(lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, padding=1), runs)
    bwd_weight = median_seconds(lambda: torch.nn.grad.conv2d_weight(x, w.shape, gy, padding=1), runs)
    return {'forward': flops / fwd / 1e9, 'backwardData': flops / bwd_data / 1e9, 'backwardWeight': flops / bwd_weight / 1e9}


class ResBlock(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.c1 = nn.Conv2d(n, n, 3, padding=1)
        self.c2 = nn.Conv2d(n, n, 3, padding=1)

    def forward(self, x):
        return x + self.c2(F.relu(self.c1(x)))


class EDSR(nn.Module):
    def __init__(self, blocks, feats, scale, colors=3):
        super().__init__()
        self.head = nn.Conv2d(colors, feats, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(feats) for _ in range(blocks)], nn.Conv2d(feats, feats, 3, padding=1))
        up = []
        for _ in range({2: 1, 3: 1, 4: 2}[scale]):
            r = 3 if scale == 3 else 2
            up += [nn.Conv2d(feats, feats * r * r, 3, padding=1), nn.PixelShuffle(r)]
        self.tail = nn.Sequential(*up, nn.Conv2d(feats, colors, 3, padding=1))

    def forward(self, x):
        h = self.head(x)
        return self.tail(h + self.body(h))


class FSRCNN(nn.Module):
    def __init__(self, scale, d=56, s=12, m=4):
        super().__init__()
        layers = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4, output_padding=scale - 1)

    def forward(self, x):
        return self.deconv(self.body(x))


def edsr_ms():
    model = EDSR(16, 64, 4).eval()
    out = {}
    with torch.no_grad():
        for side in (64, 128):
            x = torch.rand(1, 3, side, side) * 255
            out[str(side)] = median_seconds(lambda: model(x), 3) * 1000
    return out


# The bench:train cases: name -> (model, batch, channels, patch, scale).
TRAIN_CASES = {
    'fsrcnn': (lambda: FSRCNN(3), 16, 1, 32, 3),
    'edsr-lite': (lambda: EDSR(4, 32, 4), 16, 3, 24, 4),
    'edsr-baseline': (lambda: EDSR(16, 64, 4), 4, 3, 48, 4),
}


def train_its(steps=5):
    out = {}
    for name, (make, batch, colors, patch, scale) in TRAIN_CASES.items():
        model = make()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        lr = torch.rand(batch, colors, patch, patch)
        hr = torch.rand(batch, colors, patch * scale, patch * scale)

        def step():
            opt.zero_grad()
            loss = F.l1_loss(model(lr), hr)
            loss.backward()
            opt.step()

        n = 2 if name == 'edsr-baseline' else steps
        step()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        out[name] = n / (time.perf_counter() - t0)
    return out


def main():
    parts = (sys.argv[1] if len(sys.argv) > 1 else 'conv,edsr,train').split(',')
    # Every core, as our CPU backend's default threads (Debian's build starts with one).
    torch.set_num_threads(os.cpu_count() or 1)
    result = {'version': torch.__version__, 'threads': torch.get_num_threads()}
    if 'conv' in parts:
        result['conv'] = conv_gflops()
    if 'edsr' in parts:
        result['edsrMs'] = edsr_ms()
    if 'train' in parts:
        result['trainItPerSec'] = train_its()
    print(json.dumps(result))


if __name__ == '__main__':
    main()
