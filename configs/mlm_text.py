"""Masked language modelling (BERT), BERT-Mini on the Brown corpus, from scratch on the CPU.

Devlin et al. 2019 pretrain BERT-Base (12 blocks of 768) for 1M steps of 256 sequences of 128
tokens (the last 10% at 512) on BooksCorpus + Wikipedia (3.3 B words), 15% of the tokens
predicted (80% [MASK] / 10% random / 10% unchanged), Adam at 1e-4 with betas (0.9, 0.999),
weight decay 0.01, 10k warm-up steps and a linear decay, dropout 0.1, a 30k WordPiece
vocabulary. Here: BERT-Mini (4 blocks of 256; Turc et al. 2019) on Brown's 4,809 training
passages (1.16 M words) packed into 128-token sequences, an 8k WordPiece vocabulary learned
from them, the same masking and optimizer, a cosine decay instead of the linear one, no
dropout, 20 epochs. Pre-norm blocks (the ViT's) where BERT is post-norm. Nothing here is a
measured result yet; the recipe's size for this corpus is unverified.

  python launch/pretrain.py --config configs/mlm_text.py --workdir runs/mlm_brown \\
    --config.data.path=../shared/data/text/brown
Smoke test on 200 Brown passages: --config configs/mlm_text.py:runlocal
(any folder of train.jsonl / test.jsonl works: --config.data.path=../shared/data/text/sotu)
"""

from ssl_jax.config import pretrain_defaults, text_preset
from ssl_jax.methods import method_config


def get_config(arg=None):
    if arg not in (None, "runlocal"):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c = text_preset(pretrain_defaults(), learning_rate=1e-4, runlocal=arg == "runlocal")
    c.method = method_config("mlm", rate=0.15, mask_prob=0.8, random_prob=0.1)
    c.lock()
    return c
