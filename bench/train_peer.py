"""The PyTorch side of bench/train_vs_pytorch.sh: the training step of MagFace's run/trainer.py
(SoftmaxBuilder = iResNet + MagLinear, MagLoss, SGD with momentum and weight decay) on synthetic
faces, written here from the published definitions (models/iresnet.py's layer layout, the MagFace
formulas) so that the same graph runs in Python's PyTorch. Prints one JSON line per configuration.

  python3 train_peer.py --arch iresnet18 --batch 64 --precision fp32 [--channels-last]
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride, 1, bias=False)


def bn(c):
    return nn.BatchNorm2d(c, eps=2e-5, momentum=0.9)


class Block(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.bn1, self.conv1, self.bn2 = bn(inplanes), conv3x3(inplanes, planes), bn(planes)
        self.prelu, self.conv2, self.bn3 = nn.PReLU(planes), conv3x3(planes, planes, stride), bn(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), bn(planes))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    LAYERS = {"iresnet18": [2, 2, 2, 2], "iresnet34": [3, 4, 6, 3], "iresnet50": [3, 4, 14, 3],
              "iresnet100": [3, 13, 30, 3]}

    def __init__(self, arch):
        super().__init__()
        self.conv1, self.bn1, self.prelu = conv3x3(3, 64), bn(64), nn.PReLU(64)
        inplanes, stages = 64, []
        for s, blocks in enumerate(self.LAYERS[arch]):
            planes = 64 << s
            stage = []
            for b in range(blocks):
                stage.append(Block(inplanes, planes, 2 if b == 0 else 1))
                inplanes = planes
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = bn(512)
        self.dropout = nn.Dropout2d(p=0.4, inplace=True)
        self.fc = nn.Linear(512 * 49, 512)
        self.features = nn.BatchNorm1d(512, eps=2e-5, momentum=0.9)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x))
        return self.features(self.fc(torch.flatten(x, 1)))


def mag_loss(x, weight, target, l_a=10.0, u_a=110.0, l_m=0.45, u_m=0.8, lambda_g=35.0, s=64.0):
    """MagLinear (easy margin) + MagLoss: the MagFace formulas."""
    x_norm = torch.norm(x, dim=1, keepdim=True).clamp(l_a, u_a)
    margin = (u_m - l_m) / (u_a - l_a) * (x_norm - l_a) + l_m
    cos = torch.mm(F.normalize(x), F.normalize(weight, dim=0)).clamp(-1, 1)
    sin = torch.sqrt(1.0 - cos * cos)
    cos_m = torch.where(cos > 0, cos * torch.cos(margin) - sin * torch.sin(margin), cos)
    one_hot = torch.zeros_like(cos).scatter_(1, target.view(-1, 1), 1.0)
    logits = s * (one_hot * cos_m + (1.0 - one_hot) * cos)
    loss_g = torch.mean(x_norm / (u_a * u_a) + 1.0 / x_norm)
    return F.cross_entropy(logits, target) + lambda_g * loss_g


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="iresnet18")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = IResNet(a.arch).train()
    weight = nn.Parameter(F.normalize(torch.empty(512, a.classes).uniform_(-1, 1), dim=0))
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(list(net.parameters()) + [weight], lr=0.01, momentum=0.9, weight_decay=5e-4)
    images = torch.rand(a.batch, 3, 112, 112).contiguous(memory_format=fmt)
    labels = torch.randint(a.classes, (a.batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            x = net(images)
        loss = mag_loss(x.float(), weight, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    print(json.dumps({"workload": "train", "peer": "pytorch " + torch.__version__ +
                      (" channels_last" if a.channels_last else ""), "model": a.arch,
                      "precision": a.precision, "batch": a.batch, "seconds_per_step": seconds,
                      "images_per_s": a.batch / seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
