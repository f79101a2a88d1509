"""XLA's CPU compiler options that make the train step faster, applied before JAX starts.

jaxlib 0.10 hands convolutions to YNNPACK by default (the ``individual_convolution`` entry of
``--xla_cpu_experimental_ynn_fusion_type``). On the ResNet-18 train step its weight-gradient
convolutions are slow and need full activation transposes: with the entry removed, XLA's own
(Eigen) convolutions run the SimCLR step 1.41x faster at width 64, batch 64 and 1.13x at
width 16, batch 256 (``benchmarks/throughput.py``, README "Throughput"). Matrix products keep
YNNPACK. The flags only concern the CPU backend; GPU and TPU ignore them.

XLA reads ``XLA_FLAGS`` once, when the backend starts, and aborts on a flag it does not know,
so :func:`configure` runs before the first JAX computation, only with the jaxlib series it was
measured on, and never overrides a value the user set in ``XLA_FLAGS`` (set
``--xla_cpu_experimental_ynn_fusion_type`` there yourself to choose otherwise).
"""

import os

import jaxlib

# (flag, value) pairs measured faster on jaxlib 0.10.x.
FAST_CPU_FLAGS = (("xla_cpu_experimental_ynn_fusion_type", "-individual_convolution"),)
TESTED_JAXLIB = "0.10."


def configure(environ=os.environ) -> list[str]:
    """Add :data:`FAST_CPU_FLAGS` to ``environ["XLA_FLAGS"]``; returns the flags added.

    Call it before JAX's backend starts (the ``launch/`` programs do, in ``cli.start``); later
    it has no effect on this process. Flags already named in ``XLA_FLAGS`` are left as they are;
    on another jaxlib series nothing is added."""
    if not jaxlib.__version__.startswith(TESTED_JAXLIB):
        return []
    current = environ.get("XLA_FLAGS", "")
    added = [f"--{name}={value}" for name, value in FAST_CPU_FLAGS if f"--{name}" not in current]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
