#!/bin/sh
# Install everything the tests need (Debian and Python packages) and run the whole suite:
# unit + integration tests on the current PyPI stack, then the unit tests on Debian 12's own packages.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends \
    python3 python3-venv python3-pip python3-numpy sip-tester baresip kamailio sipsak linphone-cli openssl chromium firefox-esr debootstrap \
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
# The oldest and the newest supported stacks (unit tests): Ubuntu 22.04's (Python 3.10, Twisted 22.1,
# pyOpenSSL 21, cryptography 3.4) and Debian 13's (Python 3.13, Twisted 24.11, pyOpenSSL 25), each in a
# venv of its own made with the Python of that version found on this machine.
stack() {   # NAME PYTHON-VERSION PACKAGES...
    name=$1; version=$2; shift 2
    python=
    for candidate in /usr/bin/python"$version" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python; do
        [ -x "$candidate" ] && python=$candidate
    done
    if [ -z "$python" ]; then
        echo "== unit tests on the $name stack: SKIPPED, no Python $version on this machine"
        return 0
    fi
    venv=".venv-$name"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/pip" install -q "$@" >/dev/null
    echo "== unit tests on the $name stack ($("$venv/bin/python" -c 'import sys, twisted, OpenSSL; print("Python", sys.version.split()[0], "Twisted", twisted.__version__, "pyOpenSSL", OpenSSL.__version__)'))"
    st=0
    # trial through its function: Twisted 22.1's "python -m twisted.trial" goes through pkg_resources,
    # which refuses the newer metadata names pip writes (zope_interface)
    MINISIP_SKIP_INTEGRATION=1 "$venv/bin/python" -c 'from twisted.scripts.trial import run; run()' \
        --temp-directory="/tmp/minisip-trial-$name" tests \
        >"$log" 2>&1 || st=$?
    tail -n 3 "$log"
    python3 scripts/trial_summary.py "$log" "$st" || exit $?
}
stack oldest 3.10 "twisted==22.1.0" "pyopenssl==21.0.0" "cryptography==3.4.8" "service-identity==18.1.0" \
    "zope.interface==5.4.0" "autobahn==21.11.1" pylibsrtp
stack newest 3.13 "twisted==24.11.0" "pyopenssl==25.0.0" cryptography service-identity zope.interface autobahn pylibsrtp
echo "== unit and integration tests (PyPI packages: $(.venv/bin/python -c 'import twisted; print("Twisted", twisted.__version__)'))"
status=0
.venv/bin/python -m twisted.trial --temp-directory=/tmp/minisip-trial-pypi tests 2>&1 | tee "$log" || true
status=$(grep -q '^PASSED' "$log" && echo 0 || echo 1)
exec python3 scripts/trial_summary.py "$log" "$status"
