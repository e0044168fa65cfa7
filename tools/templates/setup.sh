#!/usr/bin/env bash
# Gradescope runs this once, as root, in /autograder/source, when it builds the autograder image
# (Ubuntu with internet access). It installs Python and the course's pinned requirements; torch
# comes from PyTorch's CPU index (the default index would pull gigabytes of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-pip python3-venv
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/python -m pip install -r requirements.txt
# The graded tests are read by the unprivileged user that runs the student's code.
chmod -R a+rX /autograder/source /autograder/venv
