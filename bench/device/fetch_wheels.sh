#!/usr/bin/env bash
# On a connected machine: bench/device/fetch_wheels.sh [DIR] downloads bench/device/wheels.txt for CPython 3.12 on
# x86-64 Linux into DIR (default .whl, which .gitignore keeps out of git). Carry DIR to the GPU machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-.whl}
platforms=()
for tag in manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
grep -v '^#' "$here/wheels.txt" | xargs python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp "${platforms[@]}" -d "$dir"
du -sh "$dir"
