#!/usr/bin/env bash
# Set up sepcost on a fresh machine: the ffmpeg binaries that musdb and museval need even to
# import, a virtual environment in .venv and the package with its test tools. With --tests also
# what only the tests need: Chromium, in which they open the MLflow UI, and PostgreSQL, on which
# they run a team's MLflow server (they start their own; the system's service stays off). Safe to
# run again.
set -euo pipefail
cd "$(dirname "$0")"

TESTS=0
for arg in "$@"; do
    case "$arg" in
        --tests) TESTS=1 ;;
        *) echo "setup.sh: unknown option $arg (expected --tests)" >&2; exit 2 ;;
    esac
done

# apt-install the Debian packages named (once apt's lists are fresh), or say what is missing.
apt_install() {
    if command -v apt-get >/dev/null; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        echo "setup.sh: install $* with your package manager, then run this again" >&2
        exit 1
    fi
}

MISSING=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || MISSING+=(ffmpeg)
[ "$TESTS" -eq 0 ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null || MISSING+=(chromium)
[ "$TESTS" -eq 0 ] || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || MISSING+=(postgresql)
[ ${#MISSING[@]} -eq 0 ] || apt_install "${MISSING[@]}"

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
echo "setup.sh: ready (activate with '. .venv/bin/activate')"
