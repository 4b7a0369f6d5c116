#!/usr/bin/env bash
# Runs the whole suite: makes sure a Redis server is reachable (starting one on a free port when none
# is), then lint (ruff check and ruff format --check, as `make lint`), type checks and pytest.
# pytest runs in parallel (pytest-xdist): one worker per core plus one, since most tests wait on servers
# and sockets rather than compute; each test file stays on one worker (--dist loadfile), so a module's
# servers start once. SOCKLESS_TEST_WORKERS=0 runs everything in this process (to debug), or sets a count.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

if [ -z "${SOCKLESS_TEST_REDIS_URL:-}" ]; then
  if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    export SOCKLESS_TEST_REDIS_URL=redis://127.0.0.1:6379/15
  else
    if ! command -v redis-server >/dev/null; then
      echo "installing redis-server" >&2
      (apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server) >/dev/null
    fi
    PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
      --pidfile "/tmp/sockless-redis-$PORT.pid" >/dev/null
    trap 'kill "$(cat /tmp/sockless-redis-'"$PORT"'.pid)" 2>/dev/null || true' EXIT
    export SOCKLESS_TEST_REDIS_URL=redis://127.0.0.1:$PORT/15
  fi
fi

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
WORKERS=${SOCKLESS_TEST_WORKERS:-$(($(nproc) + 1))}
"$VENV/bin/python" -m pytest -q -n "$WORKERS" --dist loadfile "$@"
