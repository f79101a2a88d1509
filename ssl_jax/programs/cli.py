"""Flags and start-up shared by the thin ``launch/`` entry points."""

import ast
import json
import logging
import os
import re
import sys

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from ssl_jax import checkpoint, liveness, lock, xla_cpu
from ssl_jax import config as config_lib
from ssl_jax.paths import resolve

_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (TPU pods, SLURM, multi-node GPU)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for a manual multi-process run."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a manual run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in a manual run.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_s",
    30,
    "Multi-process runs: a process silent this long counts as lost, and the others stop "
    "with one line naming it (exit status 1). JAX's own default is 100 s.",
)
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "Fake this many CPU devices (testing sharding on one machine)."
)
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    os.path.join(os.path.expanduser("~"), ".cache", "ssl_jax", "xla"),
    "Persistent XLA compilation cache directory: a rerun of the same program (a resume, "
    "another probe of the same architecture) skips compiling. '' turns it off; the "
    "JAX_COMPILATION_CACHE_DIR environment variable, when set, takes precedence.",
)
COMPILE_CACHE_MIN_SECONDS = 1.0  # programs that compile faster are not worth a cache entry


def start() -> None:
    """Apply the device and multi-process flags before JAX's backend starts."""
    logging.getLogger("ssl_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every write at INFO.
    logging.getLogger("absl").addFilter(_OneLineOrbaxErrors())
    _quiet_closed_loops()
    # "Unable to initialize backend 'tpu'" on every machine without one: JAX's INFO, not ours.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    xla_cpu.configure()
    if _CPU_DEVICES.value:
        jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
    if _COMPILATION_CACHE.value and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE.value)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", COMPILE_CACHE_MIN_SECONDS)
    if _COORDINATOR.value or _MULTIHOST.value:
        liveness.initialize(
            _COORDINATOR.value,
            _NUM_PROCESSES.value,
            _PROCESS_ID.value,
            heartbeat_timeout_s=_HEARTBEAT_TIMEOUT.value,
        )


def main(run, config, workdir: str, show=None) -> None:
    """``run(config, workdir)`` after :func:`start`; prints ``show(results)``, by default the
    results as JSON."""
    start()
    try:
        results = liveness.run_guarded(lambda: _locked(run, config, workdir))
    except lock.WorkdirLocked as e:
        sys.exit(f"Error: {e}")
    except Exception as e:
        if not checkpoint.is_no_space(e):
            raise
        _exit_no_space(e)
    if jax.process_index() == 0:
        print(show(results) if show else json.dumps(results, indent=2, default=str))


def _exit_no_space(error: Exception) -> None:
    """A full disk: one line (the path, what is intact, what to do), exit status 1.

    ``os._exit``: at interpreter shutdown Orbax's writer threads, whose writes failed, would
    print a page of asyncio errors after this line; nothing is left to flush or close (the
    checkpointer and the workdir lock were closed on the way here)."""
    if isinstance(error, checkpoint.NoSpaceError):
        message = str(error)
    else:  # metrics, results or plots on a full disk
        where = getattr(error, "filename", None) or "the run directory"
        message = (
            f"no space left on device writing {where}: free space there and rerun the same "
            "command to resume."
        )
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


class _OneLineOrbaxErrors(logging.Filter):
    """Orbax's writer threads log each failed write with its traceback (a full disk: hundreds
    of lines per checkpoint); keep one line of each, the program says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "orbax" in record.pathname:
            record.msg = " ".join(record.getMessage().split())[:300]
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def _quiet_closed_loops() -> None:
    """Tensorstore (Orbax's writer) reports each write that completes after Orbax closed its
    event loop, which a failed save does, as an unraisable "RuntimeError: Event loop is
    closed" with its traceback (a full disk: dozens). They carry nothing the save's own error
    does not say; every other unraisable exception is printed as before."""
    default = sys.unraisablehook

    def hook(unraisable):
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        default(unraisable)

    sys.unraisablehook = hook


def _locked(run, config, workdir: str):
    """``run(config, workdir)`` holding the workdir's lock (process 0: one run per workdir)."""
    if jax.process_index() != 0:
        return run(config, workdir)
    with lock.workdir_lock(resolve(workdir)):
        return run(config, workdir)


def launch(run, show=None) -> None:
    """The whole of a ``launch/`` entry point: ``--config``, ``--workdir``, then ``run``
    (``show``: see :func:`main`)."""
    config = config_flags.DEFINE_config_file("config", None, "configs/*.py[:variant]")
    workdir = flags.DEFINE_string("workdir", None, "Output directory.")
    flags.mark_flags_as_required(["config", "workdir"])

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        main(run, config.value, workdir.value, show)

    run_app(_main)


_NONE_OVERRIDE = re.compile(r"--(\w+)\.([\w.]+)=None")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, plus two config overrides its config flags refuse:

    - ``--config.key=None`` for fields that may be None (placeholders such as
      ``data.image_size``: ``:runlocal`` sets it, this unsets it);
    - ``--config.method.name=X`` switches the method: the section is re-seeded with X's
      defaults (the config file's fields belong to its own method) before the command line's
      other ``--config.method.*`` values apply.
    """
    nones = [m for m in map(_NONE_OVERRIDE.fullmatch, argv[1:]) if m]
    switches = [m for m in map(_METHOD_NAME.fullmatch, argv[1:]) if m]
    switched = {m.group(1) for m in switches}
    held = [m for m in map(_METHOD_FIELD.fullmatch, argv[1:]) if m and m.group(1) in switched]
    skip = {m.group(0) for m in nones + held}
    kept = [a for a in argv if a not in skip]
    # config_flags reads its overrides from sys.argv itself: hide the held ones there too.
    original, sys.argv = sys.argv, [a for a in sys.argv if a not in skip]
    try:
        args = flags.FLAGS(kept)
    finally:
        sys.argv = original
    for m in switches:
        _switch_method(m, [h for h in held if h.group(1) == m.group(1)])
    for m in nones:
        _set_none(m)
    return args


_METHOD_NAME = re.compile(r"--(\w+)\.method\.name=(\w+)")
_METHOD_FIELD = re.compile(r"--(\w+)\.method\.(?!name=)(\w+)=(.*)")


def _config_flag(m: re.Match, name: str) -> ml_collections.ConfigDict:
    config = flags.FLAGS[name].value if name in flags.FLAGS else None
    if not isinstance(config, ml_collections.ConfigDict):
        raise app.UsageError(f"{m.group(0)}: --{name} is not a config flag.")
    return config


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string


def _switch_method(m: re.Match, fields: list[re.Match]) -> None:
    config = _config_flag(m, m.group(1))
    values = {f.group(2): _literal(f.group(3)) for f in fields}
    try:
        config_lib.switch_method(config, m.group(2), values)
    except (ValueError, TypeError) as e:
        raise app.UsageError(f"{m.group(0)}: {e}") from None


def _set_none(m: re.Match) -> None:
    name, path = m.groups()
    config = _config_flag(m, name)
    *parents, field = path.split(".")
    for part in parents:
        config = config[part] if part in config else None
        if not isinstance(config, ml_collections.ConfigDict):
            raise app.UsageError(f"{m.group(0)}: the config has no section {part!r}.")
    if field not in config:
        raise app.UsageError(f"{m.group(0)}: the config has no field {path!r}.")
    # Only a placeholder (a FieldReference, e.g. placeholder(int)) or a field already None may
    # become None: a value field would fail later, far from this flag.
    nullable = isinstance(config._fields[field], ml_collections.FieldReference)  # noqa: SLF001
    if not nullable and config[field] is not None:
        raise app.UsageError(
            f"{m.group(0)}: {path} cannot be None (its default is {config[field]!r})."
        )
    config[field] = None


def run_app(main_fn) -> None:
    """``app.run(main_fn)`` with :func:`parse_flags` (every ``launch/`` program)."""
    app.run(main_fn, flags_parser=parse_flags)
