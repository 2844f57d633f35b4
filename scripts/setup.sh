#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: Java + Maven (apt, if missing), the virtualenv with
# threadlink and its test and bench tools (pip), and Apache Kafka's jars (Maven Central).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
STEPS=4
started=$SECONDS
n=0
# Numbered steps with the time so far, so a cold first run (a minute or more) shows where it is.
step() { n=$((n + 1)); printf '\033[1m==> [%d/%d +%ds] %s\033[0m\n' "$n" "$STEPS" "$((SECONDS - started))" "$*"; }

step "checking Java 17+ and Maven"
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "    installing Java 17 and Maven (apt) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven >/dev/null
  else
    echo "threadlink needs java (17+) and mvn on PATH: install them (Debian: apt-get install openjdk-17-jre-headless maven)" >&2
    exit 1
  fi
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "threadlink needs Python 3.11 or newer as \$PYTHON (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  step "creating .venv and installing threadlink with its test and bench tools (pip)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # setuptools prints a boxed warning on every editable install ("Editable installation ...
  # folders with the same name"); it says nothing about this project. Only that one is filtered.
  PYTHONWARNINGS="ignore:Editable installation:UserWarning" .venv/bin/pip install -q --progress-bar on -e '.[test,bench]'
  rm -f .venv/.installed-* && touch "$stamp"
else
  step "the virtualenv .venv is up to date"
fi

step "fetching Apache Kafka with Maven (cached in ~/.m2 after the first run)"
.venv/bin/python deploy/kafka/local_kafka.py fetch
step "ready in $((SECONDS - started))s: the CLI is .venv/bin/threadlink (or \`source .venv/bin/activate\` for a bare threadlink)"
