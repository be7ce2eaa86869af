#!/usr/bin/env bash
# Set up sepcost on a fresh machine: the ffmpeg binaries that musdb and museval need even to
# import, a virtual environment in .venv and the package with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    if command -v apt-get >/dev/null; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
    else
        echo "setup.sh: install ffmpeg (it provides ffmpeg and ffprobe) with your package manager," \
             "e.g. 'brew install ffmpeg' or 'conda install -c conda-forge ffmpeg', then run this again" >&2
        exit 1
    fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
echo "setup.sh: ready (activate with '. .venv/bin/activate')"
