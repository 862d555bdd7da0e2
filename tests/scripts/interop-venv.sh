#!/usr/bin/env bash
# Prepares the Python virtual environment the Avro interoperability tests drive: Apache
# Avro's own Python implementation (PyPI `avro`, pinned below) in a venv under the build
# directory, never the system Python's site-packages. Idempotent: a venv that already has
# the pinned version is left as it is. Prints the venv's python path on stdout (and
# nothing else there), so callers can do `python="$(tests/scripts/interop-venv.sh)"`.
#
#   tests/scripts/interop-venv.sh          # creates $CARGO_TARGET_DIR/interop-venv (or target/)
#   INTEROP_VENV=/some/dir tests/scripts/interop-venv.sh
#
# Needs python3 with the venv module (Debian: apt-get install python3-venv) and PyPI.
set -euo pipefail

# The avro release the interop tests were written against (docs/avro.md).
avro_version="1.12.2"

repo_dir="$(cd "$(dirname "$0")/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_dir/target}"
venv_dir="${INTEROP_VENV:-$target_dir/interop-venv}"
python="$venv_dir/bin/python"

installed_version() {
    "$python" -c 'import importlib.metadata as m; print(m.version("avro"))' 2>/dev/null || true
}

if [ ! -x "$python" ]; then
    mkdir -p "$(dirname "$venv_dir")"
    python3 -m venv "$venv_dir" >&2
fi
if [ "$(installed_version)" != "$avro_version" ]; then
    "$python" -m pip install --quiet --disable-pip-version-check "avro==$avro_version" >&2
fi
if [ "$(installed_version)" != "$avro_version" ]; then
    echo "interop-venv: avro $avro_version is not importable from $python" >&2
    exit 1
fi
echo "$python"
