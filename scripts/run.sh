#!/bin/sh
# Install minisip into ./.venv and run it in the foreground on the sample config (SQLite data in ~/.minisipserver).
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    $SUDO apt-get update -q && $SUDO apt-get install -y -q python3-venv python3-pip
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q .
exec .venv/bin/twistd -n --logger minisip.log.observer minisip --config "${MINISIP_CONFIG:-etc/minisip.conf}" "$@"
