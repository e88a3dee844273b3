#!/usr/bin/env bash
# The test suite: lint, manifest validation, then pytest (GUI tests on a virtual display).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check napari_rcgan training tests benchmarks
QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-xcb}" python -m pytest -q -p no:cacheprovider "$@"
