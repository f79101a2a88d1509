#!/usr/bin/env bash
# Run an ssl_jax program on a Cloud TPU VM (one host or a multi-host slice) with gcloud.
#
#   launch/tpu_vm.sh SUBCOMMAND... [flags] [-- --config.key=value ...]
#
# Subcommands, run in the order given:
#   create  gcloud compute tpus tpu-vm create NAME (--spot or --preemptible for cheaper capacity)
#   setup   on every worker: get the code (git clone --repo URL, or copy this checkout without
#           .git and .venv), make a Python venv, pip install -r requirements.txt -e '.[tpu]'
#   run     on every worker, the same command: PYTHON PROGRAM --multihost --config CONFIG
#           --workdir WORKDIR [overrides after --]; jax.distributed.initialize() finds the hosts
#   stop    send TERM to the program on every worker (it checkpoints and exits 0)
#   delete  gcloud compute tpus tpu-vm delete NAME (asks for confirmation)
#   all     create, setup, run (not delete: a stopped run resumes on the same VM)
#
# Flags:
#   --name NAME            TPU VM name (required)
#   --zone ZONE            zone, e.g. us-west4-a (required)
#   --project PROJECT      Google Cloud project (default: gcloud's configured project)
#   --accelerator TYPE     accelerator type (default v5litepod-16)
#   --runtime VERSION      TPU software version (default v2-alpha-tpuv5-lite; v5p: v2-alpha-tpuv5,
#                          v6e: v2-alpha-tpuv6e, v4: tpu-ubuntu2204-base)
#   --spot | --preemptible create Spot or preemptible capacity
#   --repo URL             setup clones URL instead of copying this checkout
#   --python PYTHON        interpreter for the venv, Python >= 3.11 (default python3.11; setup
#                          installs it with apt when missing)
#   --program FILE         program to run (default launch/pretrain.py)
#   --config FILE          config, e.g. configs/simclr_imagenet.py (required for run)
#   --workdir DIR          run directory every worker reads and writes, e.g. gs://BUCKET/runs/NAME
#                          (required for run)
#   --dry_run              print every command instead of running it; placeholders (NAME,
#                          ZONE, ...) fill in missing flags; alone, it shows every subcommand
#   -h, --help             this text
#
# Preemption and resume. On a maintenance event the TPU VM sends SIGTERM to the program; on
# every host it stops at the same step, saves a checkpoint in WORKDIR and exits 0. Rerunning
# `run` with the same WORKDIR resumes from that checkpoint. A Spot or preemptible TPU that is
# reclaimed is gone with its disks: `delete`, then `create setup run` with the same WORKDIR
# (which must live outside the VM, e.g. in a bucket). If this script receives TERM or INT
# (Ctrl-C) during `run`, it runs `stop` on every worker and waits for the programs to
# checkpoint; a second signal ends the local ssh sessions.
#
# Example:
#   launch/tpu_vm.sh all --name my-tpu --zone us-west4-a --spot \
#     --config configs/simclr_imagenet.py --workdir gs://my-bucket/runs/simclr \
#     -- --config.data.tfds_data_dir=gs://my-bucket/tensorflow_datasets

set -euo pipefail
SCRIPT=${BASH_SOURCE[0]}
# shellcheck source=launch/_common.sh
source "$(dirname "$SCRIPT")/_common.sh"

NAME="" ZONE="" PROJECT="" ACCELERATOR=v5litepod-16 RUNTIME=v2-alpha-tpuv5-lite
SPOT=0 PREEMPTIBLE=0 REPO="" PYTHON=python3.11 PROGRAM=launch/pretrain.py CONFIG="" WORKDIR=""
# shellcheck disable=SC2088 # the remote shell expands the ~
REMOTE_DIR='~/ssl_jax'        # the code on each worker
REMOTE_TARBALL=/tmp/ssl_jax.tar.gz
PIDFILE=/tmp/ssl_jax_run.pid  # the running program's PID on each worker, for `stop`

parse_flags name:NAME zone:ZONE project:PROJECT accelerator:ACCELERATOR runtime:RUNTIME \
  'spot!SPOT' 'preemptible!PREEMPTIBLE' repo:REPO python:PYTHON program:PROGRAM config:CONFIG \
  workdir:WORKDIR -- "$@"
if ((${#POSITIONAL[@]} == 0)); then
  ((DRY_RUN)) || die "name a subcommand: create, setup, run, stop, delete or all (see --help)"
  POSITIONAL=(create setup run stop delete) # --dry_run alone shows every step
fi
for cmd in "${POSITIONAL[@]}"; do
  case $cmd in
    create | setup | run | stop | delete | all) ;;
    *) die "unknown subcommand $cmd (expected create, setup, run, stop, delete or all)" ;;
  esac
done
if ((SPOT && PREEMPTIBLE)); then die "--spot and --preemptible exclude each other"; fi
need NAME --name NAME
need ZONE --zone ZONE
maybe PROJECT PROJECT
GCLOUD_ARGS=(--zone "$ZONE")
[[ -z $PROJECT ]] || GCLOUD_ARGS+=(--project "$PROJECT")

on_workers() { # on_workers COMMAND: run a shell command on every worker
  run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_ARGS[@]}" --worker=all --command "$1"
}

create() {
  local capacity=()
  if ((SPOT)); then capacity=(--spot); fi
  if ((PREEMPTIBLE)); then capacity=(--preemptible); fi
  run gcloud compute tpus tpu-vm create "$NAME" "${GCLOUD_ARGS[@]}" \
    --accelerator-type "$ACCELERATOR" --version "$RUNTIME" "${capacity[@]}"
}

setup() {
  if [[ -n $REPO ]]; then
    on_workers "if [ -d $REMOTE_DIR/.git ]; then git -C $REMOTE_DIR pull --ff-only; \
else git clone $(quote "$REPO") $REMOTE_DIR; fi"
  else
    local tarball=/tmp/ssl_jax.tar.gz
    ((DRY_RUN)) || tarball=$(mktemp -d)/ssl_jax.tar.gz
    pack_checkout "$tarball"
    run gcloud compute tpus tpu-vm scp "$tarball" "$NAME:$REMOTE_TARBALL" "${GCLOUD_ARGS[@]}" \
      --worker=all
    on_workers "mkdir -p $REMOTE_DIR && tar -xzf $REMOTE_TARBALL -C $REMOTE_DIR"
  fi
  local py
  py=$(quote "$PYTHON")
  on_workers "cd $REMOTE_DIR && { $py -m venv .venv 2>/dev/null || { sudo apt-get update -q \
&& sudo apt-get install -y -q $py $py-venv && $py -m venv --clear .venv; }; } \
&& .venv/bin/pip install -q -U pip && .venv/bin/pip install -r requirements.txt -e \".[tpu]\""
}

stop() {
  on_workers "if [ -f $PIDFILE ]; then kill -TERM \"\$(cat $PIDFILE)\" 2>/dev/null || true; fi"
}

run_program() {
  need CONFIG --config configs/simclr_imagenet.py
  need WORKDIR --workdir "gs://BUCKET/runs/$NAME"
  program_args
  # exec: the program keeps the shell's PID, written to PIDFILE for `stop`.
  local command
  command="cd $REMOTE_DIR && echo \$\$ > $PIDFILE && exec .venv/bin/python \
$(quote "${PROGRAM_ARGS[@]}")"
  ON_SIGNAL=stop
  forward_signals
  start gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_ARGS[@]}" --worker=all --command "$command"
  wait_children
}

delete() {
  run gcloud compute tpus tpu-vm delete "$NAME" "${GCLOUD_ARGS[@]}"
}

for cmd in "${POSITIONAL[@]}"; do
  if ((DRY_RUN)); then echo "# $cmd"; fi
  case $cmd in
    all) create; setup; run_program ;;
    run) run_program ;;
    *) "$cmd" ;;
  esac
done
