#!/usr/bin/env bash
# The non-editable install end to end: build lor's wheel, install it with its dependencies
# into a fresh venv, then `lor db upgrade`, `lor models register --shipped` and `lor demo`
# from outside the checkout, against a throwaway database on a PostgreSQL server.
#   scripts/check_wheel.sh [SERVER_URL]   (default: the local server, trust auth)
# Takes minutes: pip resolves every dependency (tests/test_wheel.py is the fast check).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SERVER=${1:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
PYTHON=${PYTHON:-python3.11}
WORK=$(mktemp -d)
DB="lor_wheel_$$"
cleanup() {
  "$WORK/venv/bin/python" - "$SERVER" "$DB" <<'PY' || true
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    conn.execute(text(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)'))
PY
  rm -rf "$WORK"
}
trap cleanup EXIT

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip
"$WORK/venv/bin/python" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$REPO"
"$WORK/venv/bin/python" -m pip install --quiet "$WORK"/dist/lor-*.whl
"$WORK/venv/bin/python" - "$SERVER" "$DB" <<'PY'
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    conn.execute(text(f'CREATE DATABASE "{sys.argv[2]}"'))
PY
export LOR_DATABASE_URL="${SERVER%/*}/$DB" LOR_HOME="$WORK/home" TF_CPP_MIN_LOG_LEVEL=3
cd "$WORK"
"$WORK/venv/bin/python" -c "import lor; assert lor.__file__.startswith('$WORK/venv'), lor.__file__"
"$WORK/venv/bin/lor" db upgrade
"$WORK/venv/bin/lor" models register --shipped
"$WORK/venv/bin/lor" models verify
"$WORK/venv/bin/lor" demo
echo "wheel check passed"
