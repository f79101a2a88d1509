"""ELECTRA (replaced-token detection), a BERT-Mini-sized discriminator on the Brown corpus.

Clark et al. 2020 train ELECTRA-Small (12 blocks of 256, a generator 1/4 as wide) for 1M steps
of 128 sequences of 128 tokens at lr 5e-4 (Adam, weight decay 0.01, 10k warm-up steps), 15% of
the tokens masked, loss = generator MLM + 50 x replaced-token detection; ELECTRA-Small reaches
79.9 GLUE (paper, Table 1; unverified here). Here: a BERT-Mini-sized discriminator (4 blocks of
256) with a generator 1/4 as wide, on Brown's 4,809 training passages packed into 128-token
sequences, an 8k WordPiece vocabulary learned from them, 20 epochs, a cosine decay. Nothing
here is a measured result yet.

  python launch/pretrain.py --config configs/electra_text.py --workdir runs/electra_brown \\
    --config.data.path=../shared/data/text/brown
Smoke test on 200 Brown passages: --config configs/electra_text.py:runlocal
(any folder of train.jsonl / test.jsonl works: --config.data.path=../shared/data/text/sotu)
"""

from ssl_jax.config import pretrain_defaults, text_preset
from ssl_jax.methods import method_config


def get_config(arg=None):
    if arg not in (None, "runlocal"):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c = text_preset(pretrain_defaults(), learning_rate=5e-4, runlocal=arg == "runlocal")
    c.method = method_config("electra", rate=0.15, rtd_weight=50.0, generator_divisor=4)
    c.lock()
    return c
