"""The PyTorch side of the throughput comparison: the same SimCLR and BYOL steps in PyTorch.

Benchmark-only (``pip install torch==2.13.0``); the library never imports it. The networks
match ``ssl_jax``'s layer for layer, so the parameter counts are equal (``throughput.py``
checks): CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool, BasicBlocks (2, 2, 2, 2) of
width w, 2w, 4w, 8w, zero-initialised last BatchNorm of every residual branch, projection
shortcuts), MLP heads Linear (no bias) - BatchNorm - ReLU - Linear; SimCLR's NT-Xent over all
2N views; BYOL's predictor, symmetric 2 - 2 cos loss and EMA target (backbone and projector)
run on the same 2N views; LARS as optax's (weight decay, then trust ratio
``0.001 ||w|| / ||g + wd w||``, learning rate, momentum 0.9; biases and BatchNorm excluded
from both). The step receives the two views already made: the augmentation ``ssl_jax``
runs inside its step is not timed here (a favour to PyTorch, stated in the results).
"""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + residual)


def resnet18(width: int) -> nn.Module:
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for i in range(4):
        for j in range(2):
            layers.append(Block(cin, width * 2**i, 2 if i > 0 and j == 0 else 1))
            cin = width * 2**i
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def mlp(din: int, hidden: int, dout: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(din, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, dout),
    )


def nt_xent(z1, z2, temperature: float):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, targets)


def byol_loss(p, z):
    return (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()


class Lars:
    """optax.lars's update order on the foreach kernels; ``exclude``d params get plain SGD."""

    def __init__(self, params, lr, weight_decay, momentum=0.9, eta=0.001):
        params = list(params)
        self.adapt = [p for p in params if p.ndim > 1]
        self.plain = [p for p in params if p.ndim <= 1]
        self.lr, self.wd, self.momentum, self.eta = lr, weight_decay, momentum, eta
        self.bufs = [torch.zeros_like(p) for p in self.adapt + self.plain]

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.adapt]
        torch._foreach_add_(grads, self.adapt, alpha=self.wd)
        w_norm = torch._foreach_norm(self.adapt)
        g_norm = torch._foreach_norm(grads)
        ratios = [
            torch.where((w > 0) & (g > 0), self.eta * w / g, torch.ones_like(w))
            for w, g in zip(w_norm, g_norm, strict=True)
        ]
        torch._foreach_mul_(grads, ratios)
        updates = grads + [p.grad for p in self.plain]
        torch._foreach_mul_(self.bufs, self.momentum)
        torch._foreach_add_(self.bufs, updates, alpha=self.lr)
        torch._foreach_sub_(self.adapt + self.plain, self.bufs)

    def zero_grad(self):
        for p in self.adapt + self.plain:
            p.grad = None


def vit_tiny4() -> nn.Module:
    """timm's ViT-Tiny with 4-pixel patches on 32-pixel images, [CLS] feature after the final
    LayerNorm (ssl_jax's ``vit_tiny``, ``patch_size=4``, ``pool="cls"``: the same layout, which
    ``ssl_jax/weights`` imports from timm)."""
    import timm  # noqa: PLC0415 (only the ViT rows need it)

    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, num_classes=0
    )


def make_backbone(width: int | str) -> tuple[nn.Module, int]:
    """The backbone of a throughput cell and its feature width: CIFAR ResNet-18 of ``width``,
    or ViT-Tiny/4 for ``width="vit"``."""
    return (vit_tiny4(), 192) if width == "vit" else (resnet18(width), 8 * width)


def make_step(method: str, width: int | str, config) -> tuple[callable, int]:
    """``(step(v1, v2) -> loss, trainable parameter count)`` for ``method`` from ``config``
    (the ssl_jax config's method section and optimizer); ``width="vit"``: ViT-Tiny/4."""
    m = config.method
    backbone, feature_dim = make_backbone(width)
    projector = mlp(feature_dim, m.proj_hidden_dim, m.proj_dim)
    online = nn.ModuleList([backbone, projector])
    if method == "byol":
        predictor = mlp(m.proj_dim, m.pred_hidden_dim, m.proj_dim)
        online.append(predictor)
        target = nn.Sequential(
            make_backbone(width)[0], mlp(feature_dim, m.proj_hidden_dim, m.proj_dim)
        )
        target.load_state_dict(nn.Sequential(backbone, projector).state_dict())
        for p in target.parameters():
            p.requires_grad_(False)
    online.train()
    opt = Lars(online.parameters(), config.optim.base_learning_rate, config.optim.weight_decay)
    count = sum(p.numel() for p in online.parameters())

    def simclr(v1, v2):
        z = projector(backbone(torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        loss = nt_xent(z1, z2, m.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def byol(v1, v2):
        x = torch.cat([v1, v2])
        p1, p2 = predictor(projector(backbone(x))).chunk(2)
        with torch.no_grad():
            z1, z2 = target(x).chunk(2)
        loss = byol_loss(p1, z2) + byol_loss(p2, z1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            online_target = list(backbone.parameters()) + list(projector.parameters())
            torch._foreach_lerp_(list(target.parameters()), online_target, 1 - m.base_momentum)
        return loss

    return (byol if method == "byol" else simclr), count
