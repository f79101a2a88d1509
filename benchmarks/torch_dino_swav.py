"""The PyTorch reference of DINO and SwAV for the side-by-side benchmark (issue #14).

Benchmark-only (``pip install torch==2.13.0``). Written from the papers and the structure of the
authors' code (facebookresearch/dino ``DINOHead``, ``DINOLoss``, ``main_dino.py``;
facebookresearch/swav ``main_swav.py`` ``distributed_sinkhorn``), independently of ``ssl_jax``:
its own heads, losses, schedules and EMA; it shares only the backbone and LARS of
``torch_step.py`` and receives its crops from the caller.

- DINO: student backbone -> head (Linear-GELU x (layers-1) -> bottleneck, L2-normalise,
  weight-normalised Linear to K without bias, its norm fixed to 1 with ``norm_last_layer``);
  teacher = EMA of the student (backbone and head) on the global crops only, centred
  (``center`` EMA of the teacher's batch mean) and sharpened by a teacher temperature that
  warms up linearly; cross-entropy over all (teacher crop, other student crop) pairs; the last
  layer gets no gradient during the first ``freeze_last_layer_steps`` steps.
- SwAV: backbone -> projector (Linear-BN-ReLU-Linear) -> L2-normalise -> prototypes (Linear
  without bias, each prototype renormalised before every step); codes of the two global crops
  by 3 Sinkhorn-Knopp iterations at epsilon 0.05, each crop predicting the other crops' codes;
  the prototypes get no gradient during the first ``freeze_prototypes_steps`` steps. The queue
  is not implemented (the CIFAR config starts it at epoch 50, past this benchmark's budget).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_step import Lars, resnet18


class DINOHead(nn.Module):
    def __init__(self, din, out_dim, hidden, bottleneck, layers, use_bn, norm_last_layer):
        super().__init__()
        dims = [din] + [hidden] * (layers - 1) + [bottleneck]
        mods = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            mods.append(nn.Linear(a, b))
            if i < layers - 1:
                if use_bn:
                    mods.append(nn.BatchNorm1d(b))
                mods.append(nn.GELU())
        self.mlp = nn.Sequential(*mods)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck, out_dim, bias=False)
        )
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def entropy(logits):
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


def linear_warmup_cosine(step, *, peak, warmup, total):
    """Linear warm-up from 0 to ``peak`` over ``warmup`` steps, then cosine decay to 0."""
    if step < warmup:
        return peak * step / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class Reference:
    """One method's networks, optimizer and step: ``step(globals, locals, i) -> metrics``."""

    def __init__(self, method: str, config, total_steps: int, steps_per_epoch: int):
        self.method, self.m, self.total = method, config.method, total_steps
        width = config.model.width
        batch = config.data.batch_size
        self.backbone = resnet18(width)
        m = self.m
        if method == "dino":

            def head():
                return DINOHead(
                    8 * width,
                    m.out_dim,
                    m.proj_hidden_dim,
                    m.bottleneck_dim,
                    m.head_layers,
                    m.head_use_bn,
                    m.norm_last_layer,
                )

            self.head = head()
            self.teacher = nn.ModuleList([resnet18(width), head()])
            self.teacher.load_state_dict(nn.ModuleList([self.backbone, self.head]).state_dict())
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            self.center = torch.zeros(m.out_dim)
        else:
            self.head = nn.Sequential(
                nn.Linear(8 * width, m.proj_hidden_dim),
                nn.BatchNorm1d(m.proj_hidden_dim),
                nn.ReLU(),
                nn.Linear(m.proj_hidden_dim, m.proj_dim),
            )
            self.prototypes = nn.Linear(m.proj_dim, m.num_prototypes, bias=False)
            with torch.no_grad():
                self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        modules = [self.backbone, self.head] + ([self.prototypes] if method == "swav" else [])
        self.params = [p for mod in modules for p in mod.parameters() if p.requires_grad]
        lr = config.optim.base_learning_rate * batch / 256
        self.opt = Lars(self.params, lr, config.optim.weight_decay)
        self.peak_lr = lr
        # Warm-ups longer than the run end with it, as in ssl_jax's programs (the CIFAR
        # recipes warm the lr up over 10 epochs and DINO's teacher temperature over 50).
        self.warmup = min(round(config.schedule.warmup_epochs * steps_per_epoch), total_steps - 1)

    def _dino(self, crops_g, crops_l, i):
        m = self.m
        student = torch.cat(
            [self.head(self.backbone(torch.cat(g))) for g in (crops_g, crops_l) if g]
        )
        with torch.no_grad():
            teacher = self.teacher[1](self.teacher[0](torch.cat(crops_g)))
        warm = min(m.warmup_teacher_temp_steps, self.total)
        temp = (
            m.warmup_teacher_temp + (m.teacher_temp - m.warmup_teacher_temp) * i / max(warm - 1, 1)
            if i < warm
            else m.teacher_temp
        )
        t_logits = (teacher - self.center) / temp
        q = F.softmax(t_logits, dim=-1).chunk(len(crops_g))
        logp = F.log_softmax(student / m.student_temp, dim=-1).chunk(len(crops_g) + len(crops_l))
        total, pairs = 0.0, 0
        for t, qt in enumerate(q):
            for s, lp in enumerate(logp):
                if s != t:
                    total = total + (-(qt * lp).sum(-1)).mean()
                    pairs += 1
        loss = total / pairs
        with torch.no_grad():
            self.center = self.center * m.center_momentum + teacher.mean(0) * (
                1 - m.center_momentum
            )
        return loss, {"teacher_entropy": float(entropy(t_logits)), "teacher_temp": temp}

    @torch.no_grad()
    def _sinkhorn(self, scores):
        q = torch.exp(scores / self.m.sinkhorn_epsilon).t()  # K x B
        q /= q.sum()
        k, b = q.shape
        for _ in range(self.m.sinkhorn_iters):
            q /= q.sum(dim=1, keepdim=True)
            q /= k
            q /= q.sum(dim=0, keepdim=True)
            q /= b
        return (q * b).t()

    def _swav(self, crops_g, crops_l, i):
        m = self.m
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        groups = [g for g in (crops_g, crops_l) if g]
        z = torch.cat([self.head(self.backbone(torch.cat(g))) for g in groups])
        scores = self.prototypes(F.normalize(z, dim=1))
        views = scores.chunk(len(crops_g) + len(crops_l))
        total = 0.0
        for a in range(len(crops_g)):
            q = self._sinkhorn(views[a].detach())
            sub = 0.0
            for v, s in enumerate(views):
                if v != a:
                    sub = sub - (q * F.log_softmax(s / m.temperature, dim=1)).sum(1).mean()
            total = total + sub / (len(views) - 1)
        loss = total / len(crops_g)
        return loss, {"prediction_entropy": float(entropy(scores.detach() / m.temperature))}

    def step(self, crops_g, crops_l, i: int) -> dict:
        lr = linear_warmup_cosine(i, peak=self.peak_lr, warmup=self.warmup, total=self.total)
        self.opt.lr = lr
        loss, metrics = (self._dino if self.method == "dino" else self._swav)(crops_g, crops_l, i)
        self.opt.zero_grad()
        loss.backward()
        frozen = (
            self.head.last_layer.parameters()
            if self.method == "dino" and i < self.m.freeze_last_layer_steps
            else self.prototypes.parameters()
            if self.method == "swav" and i < self.m.freeze_prototypes_steps
            else []
        )
        for p in frozen:
            p.grad = None if p.grad is None else torch.zeros_like(p.grad)
        self.opt.step()
        if self.method == "dino":
            tau = 1 - (1 - self.m.base_momentum) * (math.cos(math.pi * i / self.total) + 1) / 2
            with torch.no_grad():
                online = list(self.backbone.parameters()) + list(self.head.parameters())
                target = list(self.teacher.parameters())
                torch._foreach_lerp_(target, online, 1 - tau)
        return {"loss": float(loss), "learning_rate": lr, **metrics}

    def _modules(self) -> dict:
        names = ("backbone", "head", "teacher", "prototypes")
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def state_dict(self) -> dict:
        """What a resume needs (parametrised modules only serialise through state_dict)."""
        return {
            "modules": {n: m.state_dict() for n, m in self._modules().items()},
            "momentum": self.opt.bufs,
            "center": getattr(self, "center", None),
        }

    def load_state_dict(self, state: dict) -> None:
        for n, m in self._modules().items():
            m.load_state_dict(state["modules"][n])
        self.opt.bufs = state["momentum"]
        if state["center"] is not None:
            self.center = state["center"]

    def encoder(self) -> nn.Module:
        """The network ssl_jax's configs export: DINO's teacher, SwAV's online backbone."""
        return self.teacher[0] if self.method == "dino" else self.backbone
