#!/usr/bin/env bash
# Run an ssl_jax program as an xpk workload on a GKE cluster with TPU node pools.
#
#   launch/gke_xpk.sh SUBCOMMAND... [flags] [-- --config.key=value ...]
#
# The cluster exists already (xpk cluster create); docker and xpk (pip install xpk) are
# installed, and docker can push to the registry (gcloud auth configure-docker HOST).
#
# Subcommands, run in the order given:
#   build   pack this checkout (without .git and .venv) into a temporary build context with a
#           Dockerfile (python:3.11-slim, pip install -r requirements.txt -e '.[tpu]'), then
#           docker build and docker push IMAGE
#   create  xpk workload create: every TPU host runs the same command,
#           python3 PROGRAM --multihost --config CONFIG --workdir WORKDIR [overrides after --]
#   delete  xpk workload delete
#   all     build, create
#
# Flags:
#   --cluster CLUSTER      GKE cluster made by xpk (required)
#   --name NAME            workload name, lower case (required)
#   --project PROJECT      Google Cloud project (default: gcloud's configured project)
#   --zone ZONE            the cluster's zone (default: gcloud's configured zone)
#   --accelerator TYPE     TPU type of the node pool (default v5litepod-16)
#   --num_slices N         slices (default 1)
#   --image IMAGE          image to build and run, e.g.
#                          us-docker.pkg.dev/PROJECT/REPOSITORY/ssl_jax:latest (required)
#   --max_restarts N       times JobSet recreates the workload after a failure (default 3)
#   --grace_period S       seconds a pod may take to stop after SIGTERM (default 300)
#   --program FILE         program to run (default launch/pretrain.py)
#   --config FILE          config, e.g. configs/simclr_imagenet.py (required for create)
#   --workdir DIR          run directory every host reads and writes, e.g. gs://BUCKET/runs/NAME
#                          (required for create)
#   --dry_run              print every command (and the Dockerfile) instead of running it;
#                          placeholders (CLUSTER, NAME, ...) fill in missing flags; alone, it
#                          shows every subcommand
#   -h, --help             this text
#
# Preemption and resume. When GKE stops a node (maintenance, Spot reclaim), the pod's shell gets
# SIGTERM and passes it to the program (hence `exec` in the command), which stops every host at
# the same step, checkpoints in WORKDIR and exits 0 within --grace_period. Pods on a node that
# shuts down are marked failed, and JobSet recreates the whole workload, up to --max_restarts
# times, with the same command: it resumes from the checkpoint in WORKDIR. A program error
# (exit code 1) fails the workload without a restart.

set -euo pipefail
SCRIPT=${BASH_SOURCE[0]}
# shellcheck source=launch/_common.sh
source "$(dirname "$SCRIPT")/_common.sh"

CLUSTER="" NAME="" PROJECT="" ZONE="" ACCELERATOR=v5litepod-16 NUM_SLICES=1 IMAGE=""
MAX_RESTARTS=3 GRACE_PERIOD=300 PROGRAM=launch/pretrain.py CONFIG="" WORKDIR=""

parse_flags cluster:CLUSTER name:NAME project:PROJECT zone:ZONE accelerator:ACCELERATOR \
  num_slices:NUM_SLICES image:IMAGE max_restarts:MAX_RESTARTS grace_period:GRACE_PERIOD \
  program:PROGRAM config:CONFIG workdir:WORKDIR -- "$@"
if ((${#POSITIONAL[@]} == 0)); then
  ((DRY_RUN)) || die "name a subcommand: build, create, delete or all (see --help)"
  POSITIONAL=(build create delete) # --dry_run alone shows every step
fi
for cmd in "${POSITIONAL[@]}"; do
  case $cmd in
    build | create | delete | all) ;;
    *) die "unknown subcommand $cmd (expected build, create, delete or all)" ;;
  esac
done
maybe PROJECT PROJECT
maybe ZONE ZONE
XPK_ARGS=()
[[ -z $PROJECT ]] || XPK_ARGS+=(--project "$PROJECT")
[[ -z $ZONE ]] || XPK_ARGS+=(--zone "$ZONE")

DOCKERFILE='FROM python:3.11-slim
WORKDIR /app
ADD src.tar.gz /app/
RUN pip install --no-cache-dir -r requirements.txt -e ".[tpu]"'

build() {
  need IMAGE --image "us-docker.pkg.dev/$PROJECT/REPOSITORY/ssl_jax:latest"
  local context=/tmp/ssl_jax_image
  ((DRY_RUN)) || context=$(mktemp -d)
  pack_checkout "$context/src.tar.gz"
  write_file "$context/Dockerfile" "$DOCKERFILE"
  run docker build -t "$IMAGE" "$context"
  run docker push "$IMAGE"
}

create() {
  need CLUSTER --cluster CLUSTER
  need NAME --name NAME
  need IMAGE --image "us-docker.pkg.dev/$PROJECT/REPOSITORY/ssl_jax:latest"
  need CONFIG --config configs/simclr_imagenet.py
  need WORKDIR --workdir "gs://BUCKET/runs/$NAME"
  program_args
  # exec: the program replaces the shell xpk starts it in, so it receives the pod's SIGTERM.
  run xpk workload create --cluster "$CLUSTER" --workload "$NAME" "${XPK_ARGS[@]}" \
    --tpu-type "$ACCELERATOR" --num-slices "$NUM_SLICES" --docker-image "$IMAGE" \
    --max-restarts "$MAX_RESTARTS" --termination-grace-period-seconds "$GRACE_PERIOD" \
    --command "exec python3 $(quote "${PROGRAM_ARGS[@]}")"
}

delete() {
  need CLUSTER --cluster CLUSTER
  need NAME --name NAME
  run xpk workload delete --cluster "$CLUSTER" --workload "$NAME" "${XPK_ARGS[@]}"
}

for cmd in "${POSITIONAL[@]}"; do
  if ((DRY_RUN)); then echo "# $cmd"; fi
  case $cmd in
    all)
      build
      create
      ;;
    *) "$cmd" ;;
  esac
done
