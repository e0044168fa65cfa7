"""The worker's jail: run by ``grader/sandbox.py`` as root inside new mount and PID namespaces
(util-linux ``unshare``), it shapes the filesystem the worker will see, drops every privilege
(util-linux ``setpriv``) and becomes the worker.

    unshare --mount --pid --fork --kill-child --mount-proc --propagation private \\
        python -m grader.jail CONFIG -- python -m grader.worker ...

CONFIG (JSON) gives ``work`` (the worker's folder), ``hide`` (paths to cover) and ``uid``/``gid`` (the
dedicated user, or null: root without any capability). In the new mount namespace:

- every path of ``hide`` (the hidden tests, the reference package, other submissions, the results
  folder, the grader's private folder) is covered by an empty tmpfs (a file: by /dev/null);
- /dev/shm is a fresh tmpfs that vanishes with the namespace;
- every other mount is read-only, except ``work`` (its TMPDIR is in there): no file outlives the grading.

Then ``setpriv`` clears the capability bounding set, sets no_new_privs and becomes the user: without
CAP_SYS_ADMIN nothing can unmount a cover or make a mount writable again, and in its own PID namespace
the worker can neither see nor signal a process outside it. When the worker (PID 1 here) dies, the
kernel kills everything it started.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRATCH = ("/dev/shm",)  # a fresh tmpfs (the worker's TMPDIR is a folder of its own, in ``work``)
SCRATCH_SIZE = "256m"  # RLIMIT_FSIZE bounds a single file at 64 MiB


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, stdout=subprocess.DEVNULL)


def mount_points() -> list[str]:
    """Every mount point, as /proc/self/mountinfo lists them (octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))
    return points


def shape(work: str, hide: list[str]) -> None:
    for path in hide:
        if os.path.isdir(path):
            mount("-t", "tmpfs", "-o", "size=4k,mode=000", "tmpfs", path)
        elif os.path.exists(path):
            mount("--bind", "/dev/null", path)
    for path in SCRATCH:
        if os.path.isdir(path):
            mount("-t", "tmpfs", "-o", f"size={SCRATCH_SIZE},mode=1777", "tmpfs", path)
    mount("--bind", work, work)  # its own mount, left writable
    writable = {work, *SCRATCH}
    for point in sorted(set(mount_points()), key=len, reverse=True):
        if point not in writable:
            mount("-o", "remount,bind,ro", point)


def main(argv: list[str]) -> int:
    split = argv.index("--")
    config, command = json.loads(argv[0]), argv[split + 1:]
    shape(config["work"], config["hide"])
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
    if config.get("uid") is not None:
        drop += [f"--reuid={config['uid']}", f"--regid={config['gid']}", "--clear-groups"]
    os.execvp(drop[0], [*drop, "--", *command])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
