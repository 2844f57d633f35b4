#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: Java + Maven (apt, if missing), the virtualenv with
# threadlink and its test and bench tools (pip), and Apache Kafka's jars (Maven Central).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing Java 17 and Maven (apt)"
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
  .venv/bin/pip install -q -e '.[test,bench]'
  rm -f .venv/.installed-* && touch "$stamp"
fi

step "fetching Apache Kafka with Maven (cached in ~/.m2 after the first run)"
.venv/bin/python deploy/kafka/local_kafka.py fetch
