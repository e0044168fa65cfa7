#!/usr/bin/env bash
# Gradescope runs this once, as root, in /autograder/source, when it builds the autograder image
# (Ubuntu, with internet access). It installs Python 3.11 or newer (numpy 2.4 needs 3.11) and the
# course's pinned requirements, less the book's tools; torch comes from PyTorch's CPU index (the
# default index would pull gigabytes of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
apt-get update
PY=""
for version in 3.11 3.12 3.13; do
    if apt-get install -y --no-install-recommends "python$version" "python$version-venv"; then
        PY="python$version"
        break
    fi
done
if [ -z "$PY" ]; then
    apt-get install -y --no-install-recommends python3 python3-venv
    PY=python3
fi
"$PY" -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
# The CPU build; the same index and pin as tools/install.py's CPU_INDEX and requirements.txt
# (tests/project/test_setup_env.py checks that they agree).
/autograder/venv/bin/python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
grep -vE '^(jupyter-book|jupyterlab|ipykernel|nbval)==' requirements.txt > /tmp/requirements-grading.txt
/autograder/venv/bin/python -m pip install -r /tmp/requirements-grading.txt
# Student code runs as a dedicated unprivileged user (grader/sandbox.py), which must run the Python
# installation; the grader itself (root) reads the tests, and the hidden tests stay root's alone.
id autograder-student >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin autograder-student
chmod -R a+rX /autograder/venv
chmod -R go-rwx /autograder/source
