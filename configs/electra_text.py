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
    c.method = method_config("electra", rate=0.15, rtd_weight=50.0, generator_divisor=4)
    c.optim.update(
        name="adamw", base_learning_rate=5e-4, lr_scaling="none", weight_decay=0.01, b2=0.999
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
