"""MobileFaceNet and InceptionResnetV1 in PyTorch for bench/embed_peer.py, written from the
published layer layouts (the MobileFaceNet port whose 068.ckpt facemag loads; facenet-pytorch's
InceptionResnetV1), inference only: the same convolutions, BatchNorms and activations facemag
runs, so the two sides do the same arithmetic."""
import torch
import torch.nn as nn


class ConvBlock(nn.Module):
    """conv (optionally depthwise) - BatchNorm - PReLU (omitted when linear)."""

    def __init__(self, i, o, k, s, p, dw=False, linear=False):
        super().__init__()
        self.conv = nn.Conv2d(i, o, k, s, p, groups=i if dw else 1, bias=False)
        self.bn = nn.BatchNorm2d(o)
        self.prelu = None if linear else nn.PReLU(o)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class Bottleneck(nn.Module):
    def __init__(self, i, o, s, t):
        super().__init__()
        self.residual = s == 1 and i == o
        h = i * t
        self.conv = nn.Sequential(nn.Conv2d(i, h, 1, bias=False), nn.BatchNorm2d(h), nn.PReLU(h),
                                  nn.Conv2d(h, h, 3, s, 1, groups=h, bias=False), nn.BatchNorm2d(h),
                                  nn.PReLU(h), nn.Conv2d(h, o, 1, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileFaceNet(nn.Module):
    STAGES = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = ConvBlock(64, 64, 3, 1, 1, dw=True)
        blocks, i = [], 64
        for t, c, n, s in self.STAGES:
            for r in range(n):
                blocks.append(Bottleneck(i, c, s if r == 0 else 1, t))
                i = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = ConvBlock(128, 512, 1, 1, 0)
        self.linear7 = ConvBlock(512, 512, (7, 6), 1, 0, dw=True, linear=True)
        self.linear1 = ConvBlock(512, 128, 1, 1, 0, linear=True)

    def forward(self, x):
        x = self.linear1(self.linear7(self.conv2(self.blocks(self.dw_conv1(self.conv1(x))))))
        return x.flatten(1)


class BasicConv2d(nn.Module):
    def __init__(self, i, o, k, s=1, p=0):
        super().__init__()
        self.conv = nn.Conv2d(i, o, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(o, eps=0.001)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    """Block35/17/8: branches, concat, 1x1 conv scaled and added to the input, ReLU."""

    def __init__(self, branches, width, channels, scale, relu=True):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.conv2d = nn.Conv2d(width, channels, 1)
        self.scale, self.relu = scale, relu

    def forward(self, x):
        y = self.conv2d(torch.cat([b(x) for b in self.branches], 1)) * self.scale + x
        return torch.relu(y) if self.relu else y


def block35():
    s = nn.Sequential
    return Residual([BasicConv2d(256, 32, 1),
                     s(BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, 1, 1)),
                     s(BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, 1, 1), BasicConv2d(32, 32, 3, 1, 1))],
                    96, 256, 0.17)


def block17():
    return Residual([BasicConv2d(896, 128, 1),
                     nn.Sequential(BasicConv2d(896, 128, 1), BasicConv2d(128, 128, (1, 7), 1, (0, 3)),
                                   BasicConv2d(128, 128, (7, 1), 1, (3, 0)))], 256, 896, 0.10)


def block8(relu=True):
    return Residual([BasicConv2d(1792, 192, 1),
                     nn.Sequential(BasicConv2d(1792, 192, 1), BasicConv2d(192, 192, (1, 3), 1, (0, 1)),
                                   BasicConv2d(192, 192, (3, 1), 1, (1, 0)))], 384, 1792, 0.20, relu)


class Reduction(nn.Module):
    def __init__(self, branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches] + [nn.functional.max_pool2d(x, 3, 2)], 1)


class InceptionResnetV1(nn.Module):
    def __init__(self):
        super().__init__()
        s = nn.Sequential
        self.stem = s(BasicConv2d(3, 32, 3, 2), BasicConv2d(32, 32, 3), BasicConv2d(32, 64, 3, 1, 1),
                      nn.MaxPool2d(3, 2), BasicConv2d(64, 80, 1), BasicConv2d(80, 192, 3),
                      BasicConv2d(192, 256, 3, 2))
        self.repeat_1 = s(*[block35() for _ in range(5)])
        self.mixed_6a = Reduction([BasicConv2d(256, 384, 3, 2),
                                   s(BasicConv2d(256, 192, 1), BasicConv2d(192, 192, 3, 1, 1),
                                     BasicConv2d(192, 256, 3, 2))])
        self.repeat_2 = s(*[block17() for _ in range(10)])
        self.mixed_7a = Reduction([s(BasicConv2d(896, 256, 1), BasicConv2d(256, 384, 3, 2)),
                                   s(BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, 2)),
                                   s(BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, 1, 1),
                                     BasicConv2d(256, 256, 3, 2))])
        self.repeat_3 = s(*[block8() for _ in range(5)])
        self.block8 = block8(relu=False)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=0.001)

    def forward(self, x):
        x = self.repeat_3(self.mixed_7a(self.repeat_2(self.mixed_6a(self.repeat_1(self.stem(x))))))
        x = nn.functional.adaptive_avg_pool2d(self.block8(x), 1).flatten(1)
        return self.last_bn(self.last_linear(x))
