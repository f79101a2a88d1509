"""The host launchers in launch/: dry runs, flags, TERM forwarding, shellcheck, install extras.

Nothing here reaches a cloud or a scheduler: every test puts stub ``gcloud``, ``sbatch``,
``srun``, ``scontrol``, ``xpk`` and ``docker`` first on ``PATH``. The stubs log their
arguments and fail, except in the signal tests, where they play the remote program.
"""

import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = ["launch/tpu_vm.sh", "launch/slurm.sbatch", "launch/gke_xpk.sh"]
TOOLS = ["gcloud", "sbatch", "srun", "scontrol", "xpk", "docker"]
FAILING_STUB = '#!/usr/bin/env bash\necho "$(basename "$0") $*" >> "$STUB_LOG"\nexit 97\n'


@pytest.fixture
def stubs(tmp_path):
    """A PATH whose cloud and scheduler tools only log; ``stubs.log`` lists the calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        write_stub(bin_dir / tool, FAILING_STUB)

    class Stubs:
        dir = bin_dir
        log = tmp_path / "calls.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "STUB_LOG": str(tmp_path / "calls.log"),
            "STUB_DIR": str(bin_dir),
        }

        def calls(self):
            return self.log.read_text().splitlines() if self.log.exists() else []

    return Stubs()


def write_stub(path, text):
    path.write_text(text)
    path.chmod(0o755)


def bash(stubs, script, *args, env=None):
    return subprocess.run(
        ["bash", script, *args],
        cwd=REPO,
        env={**stubs.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def dry_run(stubs, script, *args, env=None):
    """The printed commands (comment lines dropped); fails if anything was executed."""
    result = bash(stubs, script, "--dry_run", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert stubs.calls() == []
    return [line for line in result.stdout.splitlines() if not line.startswith("#")]


def only(lines, prefix):
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, (prefix, lines)
    return found[0]


def option(words, name):
    return words[words.index(name) + 1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_syntax(script):
    subprocess.run(["bash", "-n", script], cwd=REPO, check=True, timeout=30)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_the_header(stubs, script):
    result = bash(stubs, script, "--help")
    assert result.returncode == 0
    assert "--dry_run" in result.stdout and "Preemption" in result.stdout
    assert "#SBATCH --" not in result.stdout and "set -euo" not in result.stdout
    assert stubs.calls() == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_flag_is_one_line_and_runs_nothing(stubs, script):
    result = bash(stubs, script, "--dry_run", "--bogus=1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{os.path.basename(script)}: unknown flag --bogus=1 (see --help)"
    ]
    assert stubs.calls() == []


@pytest.mark.parametrize(
    "script, args, missing",
    [
        ("launch/tpu_vm.sh", ["run"], "--name"),
        ("launch/tpu_vm.sh", ["run", "--name", "n", "--zone", "z"], "--config"),
        ("launch/slurm.sbatch", [], "--config"),
        ("launch/gke_xpk.sh", ["create"], "--cluster"),
    ],
)
def test_a_real_run_needs_its_flags(stubs, script, args, missing):
    result = bash(stubs, script, *args)
    assert result.returncode == 2
    assert f"{missing} is required" in result.stderr
    assert stubs.calls() == []


def test_a_flag_without_its_value_is_an_error(stubs):
    result = bash(stubs, "launch/tpu_vm.sh", "--dry_run", "run", "--name")
    assert result.returncode == 2 and "--name needs a value" in result.stderr


def test_tpu_vm_dry_run_shows_every_step_with_placeholders(stubs):
    lines = dry_run(stubs, "launch/tpu_vm.sh")
    gcloud = "gcloud compute tpus tpu-vm"
    assert only(lines, f"{gcloud} create") == (
        f"{gcloud} create NAME --zone ZONE --project PROJECT "
        "--accelerator-type v5litepod-16 --version v2-alpha-tpuv5-lite"
    )
    assert only(lines, f"{gcloud} delete") == f"{gcloud} delete NAME --zone ZONE --project PROJECT"
    assert only(lines, f"{gcloud} scp").endswith("--worker=all")
    ssh = [shlex.split(line) for line in lines if line.startswith(f"{gcloud} ssh")]
    assert len(ssh) == 4  # unpack, install, run, stop
    assert all(option(words, "--zone") == "ZONE" and "--worker=all" in words for words in ssh)
    remote = [option(words, "--command") for words in ssh]
    assert 'pip install -r requirements.txt -e ".[tpu]"' in remote[1]
    program = shlex.split(remote[2].split("exec ", 1)[1])
    assert program == [
        ".venv/bin/python",
        "launch/pretrain.py",
        "--multihost",
        "--config=configs/simclr_imagenet.py",
        "--workdir=gs://BUCKET/runs/NAME",
    ]
    assert "kill -TERM" in remote[3]


def test_tpu_vm_flags_and_overrides_reach_the_commands(stubs):
    lines = dry_run(
        stubs,
        "launch/tpu_vm.sh",
        "all",
        "--name=my-tpu",
        "--zone",
        "us-west4-a",
        "--spot",
        "--accelerator",
        "v5litepod-32",
        "--repo",
        "https://example.com/ssl_jax.git",
        "--program",
        "launch/linear_probe.py",
        "--config",
        "configs/linear_probe.py",
        "--workdir",
        "gs://b/runs/x",
        "--",
        "--config.seed=3",
        "--config.note=two words",
    )
    create = shlex.split(only(lines, "gcloud compute tpus tpu-vm create"))
    assert create[5] == "my-tpu" and "--spot" in create
    assert option(create, "--accelerator-type") == "v5litepod-32"
    assert not any(line.startswith(("tar ", "gcloud compute tpus tpu-vm scp")) for line in lines)
    ssh = [shlex.split(line) for line in lines if " ssh " in line]
    assert "git clone https://example.com/ssl_jax.git" in option(ssh[0], "--command")
    program = shlex.split(option(ssh[-1], "--command").split("exec ", 1)[1])
    assert program[1:] == [
        "launch/linear_probe.py",
        "--multihost",
        "--config=configs/linear_probe.py",
        "--workdir=gs://b/runs/x",
        "--config.seed=3",
        "--config.note=two words",
    ]


def test_tpu_vm_rejects_unknown_subcommands_and_conflicting_capacity(stubs):
    result = bash(stubs, "launch/tpu_vm.sh", "--dry_run", "launch")
    assert result.returncode == 2 and "unknown subcommand launch" in result.stderr
    result = bash(stubs, "launch/tpu_vm.sh", "--dry_run", "create", "--spot", "--preemptible")
    assert result.returncode == 2 and "exclude each other" in result.stderr


def test_slurm_dry_run_shows_submission_environment_srun_and_requeue(stubs):
    lines = dry_run(stubs, "launch/slurm.sbatch", env={"XLA_FLAGS": "--xla_dump_to=/tmp/d"})
    assert only(lines, "sbatch ") == (
        "sbatch launch/slurm.sbatch --program launch/pretrain.py "
        "--config configs/simclr_imagenet.py --workdir /SHARED/runs/NAME --python python3"
    )
    assert "export XLA_PYTHON_CLIENT_MEM_FRACTION=0.90" in lines
    assert "export NCCL_DEBUG=WARN" in lines
    assert shlex.split(only(lines, "export XLA_FLAGS="))[1] == (
        "XLA_FLAGS=--xla_dump_to=/tmp/d --xla_gpu_enable_latency_hiding_scheduler=true"
    )
    assert only(lines, "srun ") == (
        "srun --kill-on-bad-exit=1 python3 launch/pretrain.py --multihost "
        "--config=configs/simclr_imagenet.py --workdir=/SHARED/runs/NAME"
    )
    assert only(lines, "scontrol ") == "scontrol requeue SLURM_JOB_ID"


def test_slurm_overrides_reach_sbatch_and_srun(stubs):
    lines = dry_run(
        stubs, "launch/slurm.sbatch", "--config=c.py", "--workdir=/w", "--", "--config.seed=1"
    )
    assert only(lines, "sbatch ").endswith(
        "--config c.py --workdir /w --python python3 -- --config.seed=1"
    )
    assert only(lines, "srun ").endswith("--config=c.py --workdir=/w --config.seed=1")


def test_slurm_directives():
    with open(os.path.join(REPO, "launch/slurm.sbatch")) as f:
        directives = re.findall(r"^#SBATCH (\S+)", f.read(), re.MULTILINE)
    for wanted in ["--signal=B:TERM@120", "--requeue", "--open-mode=append"]:
        assert wanted in directives
    assert not any(d.startswith(("--gpus-per-task", "--gpu-bind")) for d in directives)


def test_slurm_finds_its_helpers_from_the_spool_copy(stubs, tmp_path):
    """sbatch runs a copy of the script elsewhere, in the submission directory."""
    spool = tmp_path / "spool"
    spool.mkdir()
    shutil.copy(os.path.join(REPO, "launch/slurm.sbatch"), spool / "slurm_script")
    env = {"SLURM_JOB_ID": "7", "SLURM_SUBMIT_DIR": REPO}
    lines = dry_run(stubs, str(spool / "slurm_script"), "--config=c.py", "--workdir=/w", env=env)
    assert not any(line.startswith("sbatch") for line in lines)  # inside a job: no resubmission
    assert only(lines, "scontrol ") == "scontrol requeue 7"


def test_slurm_xla_flags_are_known_to_the_pinned_jaxlib(stubs):
    """XLA aborts on an unknown flag; its flag table is the same in the CPU and CUDA builds."""
    lines = dry_run(stubs, "launch/slurm.sbatch", env={"XLA_FLAGS": ""})
    flags = shlex.split(only(lines, "export XLA_FLAGS="))[1].split("=", 1)[1]
    result = subprocess.run(
        [sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"],
        env={**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_gke_dry_run_shows_build_push_create_delete(stubs):
    lines = dry_run(stubs, "launch/gke_xpk.sh")
    image = "us-docker.pkg.dev/PROJECT/REPOSITORY/ssl_jax:latest"
    assert only(lines, "docker build") == f"docker build -t {image} /tmp/ssl_jax_image"
    assert only(lines, "docker push") == f"docker push {image}"
    assert 'RUN pip install --no-cache-dir -r requirements.txt -e ".[tpu]"' in lines
    create = shlex.split(only(lines, "xpk workload create"))
    expected = {
        "--cluster": "CLUSTER",
        "--workload": "NAME",
        "--tpu-type": "v5litepod-16",
        "--num-slices": "1",
        "--docker-image": image,
        "--max-restarts": "3",
    }
    assert {name: option(create, name) for name in expected} == expected
    assert shlex.split(option(create, "--command")) == [
        "exec",
        "python3",
        "launch/pretrain.py",
        "--multihost",
        "--config=configs/simclr_imagenet.py",
        "--workdir=gs://BUCKET/runs/NAME",
    ]
    assert only(lines, "xpk workload delete") == (
        "xpk workload delete --cluster CLUSTER --workload NAME --project PROJECT --zone ZONE"
    )


def test_gke_flags_and_overrides_reach_xpk(stubs):
    lines = dry_run(
        stubs,
        "launch/gke_xpk.sh",
        "create",
        "--cluster=c1",
        "--name=w1",
        "--image=img:1",
        "--num_slices=2",
        "--config=configs/byol_imagenet.py",
        "--workdir=gs://b/w1",
        "--",
        "--config.seed=2",
    )
    create = shlex.split(only(lines, "xpk workload create"))
    assert option(create, "--num-slices") == "2" and option(create, "--docker-image") == "img:1"
    assert option(create, "--command").endswith(
        "--config=configs/byol_imagenet.py --workdir=gs://b/w1 --config.seed=2"
    )
    assert not any(line.startswith("docker") for line in lines)


def signalled_run(stubs, script, *args, env=None, ready):
    """Start ``script`` for real (stub tools), send it TERM once ``ready`` exists, wait."""
    proc = subprocess.Popen(
        ["bash", script, *args],
        cwd=REPO,
        env={**stubs.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the stub program never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        # The launcher's session: stubs it left behind (a broken trap) must not outlive the test.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def test_tpu_vm_run_forwards_term_to_the_remote_programs(stubs):
    """TERM to the launcher runs `stop` on the workers and waits for the programs' exit."""
    write_stub(
        stubs.dir / "gcloud",
        """#!/usr/bin/env bash
echo "gcloud $*" >> "$STUB_LOG"
case "$*" in
  *"kill -TERM"*) kill -TERM "$(cat "$STUB_DIR/program.pid")" ;;
  *launch/pretrain.py*)
    trap 'echo "program: checkpointed after TERM" >> "$STUB_LOG"; exit 0' TERM
    echo $$ > "$STUB_DIR/program.pid.tmp" && mv "$STUB_DIR/program.pid.tmp" "$STUB_DIR/program.pid"
    while :; do sleep 0.02; done ;;
  *) exit 97 ;;
esac
""",
    )
    rc, _, err = signalled_run(
        stubs,
        "launch/tpu_vm.sh",
        "run",
        "--name=t",
        "--zone=z",
        "--config=c.py",
        "--workdir=gs://b/r",
        ready=stubs.dir / "program.pid",
    )
    calls = stubs.calls()
    assert rc == 0, err
    assert "signal received" in err
    assert len(calls) == 3, calls
    assert "exec .venv/bin/python launch/pretrain.py" in calls[0]
    assert "--worker=all" in calls[1] and "kill -TERM" in calls[1]
    assert calls[2] == "program: checkpointed after TERM"


def test_slurm_forwards_term_to_srun_then_requeues(stubs):
    write_stub(
        stubs.dir / "srun",
        """#!/usr/bin/env bash
trap 'echo "srun: TERM, tasks checkpointed" >> "$STUB_LOG"; exit 0' TERM
echo "srun $*" >> "$STUB_LOG"
touch "$STUB_DIR/srun.started"
while :; do sleep 0.02; done
""",
    )
    write_stub(stubs.dir / "scontrol", '#!/usr/bin/env bash\necho "scontrol $*" >> "$STUB_LOG"\n')
    rc, _, err = signalled_run(
        stubs,
        "launch/slurm.sbatch",
        "--config=c.py",
        "--workdir=/w",
        env={"SLURM_JOB_ID": "4242"},
        ready=stubs.dir / "srun.started",
    )
    assert rc == 0, err
    assert stubs.calls() == [
        "srun --kill-on-bad-exit=1 python3 launch/pretrain.py --multihost --config=c.py "
        "--workdir=/w",
        "srun: TERM, tasks checkpointed",
        "scontrol requeue 4242",
    ]


def test_slurm_does_not_requeue_a_finished_run(stubs):
    write_stub(stubs.dir / "srun", '#!/usr/bin/env bash\necho "srun $*" >> "$STUB_LOG"\n')
    result = bash(
        stubs, "launch/slurm.sbatch", "--config=c.py", "--workdir=/w", env={"SLURM_JOB_ID": "5"}
    )
    assert result.returncode == 0, result.stderr
    assert [call.split()[0] for call in stubs.calls()] == ["srun"]


@pytest.mark.parametrize("script", [*SCRIPTS, "launch/_common.sh"])
def test_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", "-x", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_accelerator_extras_pin_the_required_jax():
    with open(os.path.join(REPO, "requirements.txt")) as f:
        (version,) = re.findall(r"^jax==(\S+)$", f.read(), re.MULTILINE)
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    extras = config["options.extras_require"]
    assert extras["tpu"].split() == [f"jax[tpu]=={version}"]
    assert extras["cuda"].split() == [f"jax[cuda12]=={version}"]


def test_the_tensorboard_extra_names_the_viewer():
    import configparser

    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    assert config["options.extras_require"]["tensorboard"].split() == ["tensorboard>=2.21"]
