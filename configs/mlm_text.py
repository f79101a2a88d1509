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

from ml_collections.config_dict import placeholder

from ssl_jax.config import pretrain_defaults
from ssl_jax.methods import method_config

BROWN = "../shared/data/text/brown"


def get_config(arg=None):
    c = pretrain_defaults()
    c.epochs = 20
    c.data.update(
        dict(
            name="jsonl",  # jsonl | text (a folder of .txt files)
            path=BROWN,
            batch_size=256,
            seq_len=128,  # tokens per sequence; documents packed ([CLS] d1 [SEP] d2 [SEP] ...)
            pack=True,
            vocab_size=8000,  # of the tokenizer learned from the training split
            lowercase=True,
            tokenizer="",  # empty: WORKDIR/tokenizer.json, learned on the first run
            text_unit="file",  # data.name=text: one document per file or per line
            max_documents=placeholder(int),  # the first N documents only (quick runs)
            workers=0,
        )
    )
    c.model.update(
        dict(backbone="bert_mini", vocab_size=8000, max_len=128, pool="cls", drop_rate=0.0)
    )
    c.method = method_config("mlm", rate=0.15, mask_prob=0.8, random_prob=0.1)
    c.optim.update(
        name="adamw", base_learning_rate=1e-4, lr_scaling="none", weight_decay=0.01, b2=0.999
    )
    c.schedule.warmup_epochs = 1.0
    for entry in c.evals.values():  # the evaluators take images only
        entry.every_steps = 0
    c.ckpt.every_steps = 500
    c.log.every_steps = 20
    if arg == "runlocal":
        c.total_steps = 20
        c.data.update(dict(max_documents=200, seq_len=64, vocab_size=1000, batch_size=16))
        c.model.update(dict(backbone="bert_tiny", vocab_size=1000, max_len=64))
        c.optim.base_learning_rate = 1e-3
        c.ckpt.every_steps = 10
        c.log.every_steps = 5
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
