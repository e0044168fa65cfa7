"""The worker's jail: run by ``grader/sandbox.py`` as root inside new mount, PID, IPC and network
namespaces (util-linux ``unshare``), it shapes the filesystem the worker will see, drops every
privilege (util-linux ``setpriv``) and becomes the worker.

    unshare --mount --pid --ipc --net --fork --kill-child --mount-proc --propagation private \\
        python -m grader.jail CONFIG -- python -m grader.worker ...

CONFIG (JSON) gives ``work`` (the worker's folder), ``hide`` (paths to cover), ``keep`` (paths the worker
needs, such as the Python installation, shown again where a cover hides them) and ``uid``/``gid`` (the
dedicated user, or null: root without any capability). In the new mount namespace:

- every path of ``hide`` is covered by an empty tmpfs (a file: by /dev/null): the grader's own folder
  and the repository (the hidden tests, the reference, its git history), the other graders' folders
  (/tmp), homes, /run, the submissions and the results. Covering is by mounts, not permissions:
  root without capabilities still owns root's files;
- every path of ``keep`` under a cover is mounted back, through a descriptor opened before the covers;
- the worker's home (``work/.home``, its TMPDIR too) and /dev/shm are fresh, size-limited tmpfs that
  vanish with the namespace: nothing the worker writes reaches the disk or outlives it;
- every other mount is read-only, the worker's folder included.

Then the jail moves into ``work`` (a directory opened before the covers would lead back under them) and
``setpriv`` clears the capability bounding set, sets no_new_privs and becomes the user: without
CAP_SYS_ADMIN nothing can unmount a cover or make a mount writable again. In its own PID, IPC and
network namespaces the worker can neither see nor signal a process outside, leaves no shared memory
or message queue behind, and reaches no network, the host's loopback included. When the worker
(PID 1 here) dies, the kernel kills everything it started.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRATCH_SIZE = "256m"  # each of the worker's home and /dev/shm; RLIMIT_FSIZE bounds a single file at 64 MiB


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, stdout=subprocess.DEVNULL)


def mount_points() -> list[str]:
    """Every mount point, as /proc/self/mountinfo lists them (octal escapes decoded)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))
    return points


def shape(work: str, hide: list[str], keep: list[str], uid: int | None, gid: int | None) -> None:
    kept = {path: os.open(path, os.O_PATH) for path in keep if os.path.exists(path)}
    for path in sorted(hide, key=len):
        if os.path.isdir(path):
            mount("-t", "tmpfs", "-o", "size=1m,mode=755", "tmpfs", path)
        elif os.path.exists(path):
            mount("--bind", "/dev/null", path)
    for path, fd in sorted(kept.items()):
        if any(path == h or path.startswith(h.rstrip("/") + "/") for h in hide):
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(path, exist_ok=True)
            elif not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "w").close()
            subprocess.run(["mount", "--no-canonicalize", "--bind", f"/proc/self/fd/{fd}", path], check=True,
                           pass_fds=(fd,))  # the descriptor itself: its path now leads under the cover
        os.close(fd)
    home = os.path.join(work, ".home")
    owner = f",uid={uid},gid={gid}" if uid is not None else ""
    mount("-t", "tmpfs", "-o", f"size={SCRATCH_SIZE},mode=700{owner}", "tmpfs", home)
    if os.path.isdir("/dev/shm"):
        mount("-t", "tmpfs", "-o", f"size={SCRATCH_SIZE},mode=1777", "tmpfs", "/dev/shm")
    for point in sorted(set(mount_points()), key=len, reverse=True):
        if point not in (home, "/dev/shm") and os.path.exists(point):  # not one under a cover: out of reach
            mount("-o", "remount,bind,ro", point)
    os.chdir(work)


def main(argv: list[str]) -> int:
    split = argv.index("--")
    config, command = json.loads(argv[0]), argv[split + 1:]
    shape(config["work"], config["hide"], config["keep"], config.get("uid"), config.get("gid"))
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
    if config.get("uid") is not None:
        drop += [f"--reuid={config['uid']}", f"--regid={config['gid']}", "--clear-groups"]
    os.execvp(drop[0], [*drop, "--", *command])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
