"""The README: its library example runs as printed, and it stays a front door."""

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_the_library_example_trains_a_method_for_a_step_in_plain_jax():
    with open(README) as f:
        text = f.read()
    block = re.search(r"<!-- library-example -->\n```python\n(.*?)```", text, re.S)
    assert block, "README lost its <!-- library-example --> block"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md library example", "exec"), namespace)
    assert np.isfinite(float(namespace["loss"]))
    assert int(namespace["opt_state"][0].count) == 1  # adamw took one step
    assert set(namespace["encoder"]) == {"params", "batch_stats"}


def test_the_readme_is_a_front_door():
    """At most 250 lines, and no issue numbers or commit hashes: those belong in docs/."""
    with open(README) as f:
        text = f.read()
    assert len(text.splitlines()) <= 250
    assert not re.findall(r"issue #\d+|\(#\d+\)", text, flags=re.IGNORECASE)
    assert not re.findall(r"`[0-9a-f]{7,40}`", text), "a commit hash in the README"
