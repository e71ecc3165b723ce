#!/bin/sh
# Install everything the tests need (Debian and Python packages) and run the whole suite:
# unit + integration tests on the current PyPI stack, then the unit tests on Debian 12's own packages.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends \
    python3 python3-venv python3-pip sip-tester baresip kamailio sipsak linphone-cli openssl \
    dpkg-dev debhelper dh-python python3-all python3-setuptools pybuild-plugin-pyproject \
    python3-twisted python3-autobahn python3-openssl python3-pylibsrtp python3-service-identity \
    python3-zope.interface >/dev/null
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q . ruff pjsua2-python
echo "== lint (ruff)"
.venv/bin/ruff check minisip plugins tests bench
log=$(mktemp)
status=0
echo "== unit tests on Debian 12's python3 packages ($(/usr/bin/python3 -c 'import twisted; print("Twisted", twisted.__version__)'))"
MINISIP_SKIP_INTEGRATION=1 /usr/bin/python3 -m twisted.trial --temp-directory=/tmp/minisip-trial-debian tests \
    >"$log" 2>&1 || status=$?
tail -n 30 "$log"
python3 scripts/trial_summary.py "$log" "$status" || exit $?
echo "== unit and integration tests (PyPI packages: $(.venv/bin/python -c 'import twisted; print("Twisted", twisted.__version__)'))"
status=0
.venv/bin/python -m twisted.trial --temp-directory=/tmp/minisip-trial-pypi tests 2>&1 | tee "$log" || true
status=$(grep -q '^PASSED' "$log" && echo 0 || echo 1)
exec python3 scripts/trial_summary.py "$log" "$status"
