# shellcheck shell=bash
# Shared by launch/tpu_vm.sh, launch/slurm.sbatch and launch/gke_xpk.sh (sourced, never run):
# flag parsing, --help from the script's leading comment, the dry run, TERM forwarding.
#
# Each launcher sets SCRIPT (its own path) before sourcing this file.

SCRIPT_NAME=$(basename "$SCRIPT")
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY_RUN=0
SIGNALLED=0
ON_SIGNAL=""   # a function to call on the first TERM/INT instead of terminate_children
CHILDREN=()    # PIDs started by `start`
POSITIONAL=()  # arguments that are not flags (subcommands)
PASSTHROUGH=() # everything after `--`, handed to the program unchanged

usage() { # the script's leading comment block, without the '# '
  awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$SCRIPT"
}

die() {
  echo "$SCRIPT_NAME: $*" >&2
  exit 2
}

quote() { # the arguments as one shell command line, quoted only where needed
  local arg q="'\\''" out=()
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/$q}'")
    fi
  done
  echo "${out[*]}"
}

run() { # run a command, or print it under --dry_run
  if ((DRY_RUN)); then quote "$@"; else "$@"; fi
}

start() { # run a command in the background (forward_signals sends it TERM), or print it
  if ((DRY_RUN)); then
    quote "$@"
  else
    "$@" &
    CHILDREN+=("$!")
  fi
}

write_file() { # write_file PATH TEXT, or print the here-document that would
  if ((DRY_RUN)); then
    printf "cat > %s <<'EOF'\n%s\nEOF\n" "$(quote "$1")" "$2"
  else
    printf '%s\n' "$2" >"$1"
  fi
}

parse_flags() { # parse_flags SPEC... -- ARGS...; SPEC: name:VAR (takes a value) or name!VAR (a switch)
  local specs=() arg key spec found
  while [[ $1 != -- ]]; do
    specs+=("$1")
    shift
  done
  shift
  while (($#)); do
    arg=$1
    shift
    case $arg in
      --)
        PASSTHROUGH=("$@")
        return
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      --dry_run)
        DRY_RUN=1
        continue
        ;;
      -*) ;;
      *)
        POSITIONAL+=("$arg")
        continue
        ;;
    esac
    key=${arg%%=*}
    key=${key#--}
    found=0
    for spec in "${specs[@]}"; do
      if [[ $spec == "$key:"* ]]; then
        if [[ $arg == *=* ]]; then
          printf -v "${spec#*:}" '%s' "${arg#*=}"
        elif (($#)) && [[ $1 != --* ]]; then
          printf -v "${spec#*:}" '%s' "$1"
          shift
        else
          die "$arg needs a value (see --help)"
        fi
        found=1
        break
      elif [[ $spec == "$key!"* ]]; then
        [[ $arg != *=* ]] || die "$key is a switch and takes no value (see --help)"
        printf -v "${spec#*!}" 1
        found=1
        break
      fi
    done
    ((found)) || die "unknown flag $arg (see --help)"
  done
}

need() { # need VAR FLAG PLACEHOLDER: a required flag; under --dry_run the placeholder stands in
  [[ -n ${!1} ]] && return
  ((DRY_RUN)) || die "$2 is required (see --help)"
  printf -v "$1" '%s' "$3"
}

maybe() { # maybe VAR PLACEHOLDER: an optional flag, shown with its placeholder under --dry_run
  if [[ -z ${!1} ]] && ((DRY_RUN)); then printf -v "$1" '%s' "$2"; fi
}

program_args() { # PROGRAM_ARGS: PROGRAM --multihost --config --workdir, then PASSTHROUGH
  # shellcheck disable=SC2034 # read by the launchers
  PROGRAM_ARGS=("$PROGRAM" --multihost "--config=$CONFIG" "--workdir=$WORKDIR" "${PASSTHROUGH[@]}")
}

pack_checkout() { # pack_checkout TARBALL: this checkout without .git, .venv and caches
  run tar -czf "$1" --exclude=.git --exclude='.venv*' --exclude=__pycache__ --exclude='*.egg-info' \
    --exclude=.pytest_cache --exclude=.ruff_cache -C "$REPO_ROOT" .
}

forward_signals() { # from now on TERM/INT go to the children (see on_signal)
  trap on_signal TERM INT
}

on_signal() {
  SIGNALLED=$((SIGNALLED + 1))
  echo "$SCRIPT_NAME: signal received; stopping the program (it checkpoints, then exits)" >&2
  if ((SIGNALLED == 1)) && [[ -n $ON_SIGNAL ]]; then "$ON_SIGNAL"; else terminate_children; fi
}

terminate_children() {
  local pid
  for pid in "${CHILDREN[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}

wait_children() { # wait until every child has exited, through signals; returns the last failure
  local pid status rc=0
  for pid in "${CHILDREN[@]}"; do
    while :; do
      status=0
      wait "$pid" || status=$?
      # Above 128 with the child still alive: a trapped signal cut the wait short.
      if ((status <= 128)) || ! kill -0 "$pid" 2>/dev/null; then break; fi
    done
    ((status == 0)) || rc=$status
  done
  CHILDREN=()
  return "$rc"
}
