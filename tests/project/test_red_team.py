"""The project's red team: hostile submissions, one or more of each kind of attack on the grader.

Each starts from the pristine stubs (0 points deserved) or from the reference (every point
deserved), adds an attack that runs when a probe imports ``part1.optimisers``, and must score its
honest score. The attacks that forge a result are first run in one process, as on a student's
machine, where they do fool the verdict: that control proves each attack works where it can. And
after every attack nothing outside the sandbox has changed: the project's files, the results, the
other submissions' rows, and no process or temporary file is left (the autouse fixture below).

An attack that should not pass shows that it ran by raising an error that carries its evidence: the
stubs fail that test anyway, and the error reaches the test's output in results.json.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.batch import batch
from grader.sandbox import FILE_LIMIT, can_isolate
from tests.project.autograding import (ALLOW_ROOT, OPTIMISERS, ROOT, autograde, local, outputs, processes_with,
                                       read_scores, statuses, submission)

MARKER = f"red-team-{os.getpid()}"  # in every process and file an attack leaves, to look for them after
ISOLATED = can_isolate()
needs_namespaces = pytest.mark.skipif(not ISOLATED, reason="the sandbox hides paths in a mount namespace (root, util-linux)")
# What an attack may try to change, and must not: the grader, the tests, the stubs, the configuration.
GUARDED = ["pytest.ini", *(str(p.relative_to(ROOT)) for folder in ("grader", "tests/graded", "tests/hidden")
                           for p in sorted((ROOT / folder).glob("*.py"))), "assignment/part1/optimisers.py"]


def fingerprint() -> dict[str, str]:
    return {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest() for name in GUARDED}


@pytest.fixture(autouse=True)
def nothing_outside_changes():
    before = fingerprint()
    yield
    assert fingerprint() == before, "an attack changed the project's files"
    assert processes_with(MARKER) == [], "an attack left a process behind"
    for folder in ("/tmp", "/dev/shm", os.environ.get("TMPDIR", "/tmp")):
        assert not [p for p in os.listdir(folder) if MARKER in p], f"an attack left a file in {folder}"


def evidence(code: str) -> str:
    """Attack ``code`` (which sets ``_found``, a list of lines) run when the student's Momentum is built,
    then raised as the error: the evidence reaches the output, and Momentum never works."""
    body = "\n".join("        " + line for line in code.strip().splitlines())
    return f"""

import os, sys
class Momentum:  # the attack runs here, at the first probe that builds the optimiser
    def __init__(self, *args, **kwargs):
        _found = []
{body}
        raise RuntimeError("EVIDENCE\\n" + "\\n".join(map(str, _found)))
"""


# ----------------------------------------------------------------------------- 1 and 2: forging a verdict

FORGE_VERDICT = """
import grader.report, os, struct, torch, io
# Beside the verdict (one process), every outcome becomes a pass:
def _record(self, report):
    pass
_finish = grader.report.Grader.finish
def _finish_all(self):
    for result in self.results.values():
        result.phases, result.status = ["setup", "call", "teardown"], "passed"
    _finish(self)
grader.report.Grader.record, grader.report.Grader.finish = _record, _finish_all
# In a worker: a forged answer on every descriptor, and the worker's own writer taken over.
_buffer = io.BytesIO()
torch.save({"result": [[torch.zeros(3, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)]]}, _buffer)
for _fd in range(3, 256):
    try:
        os.write(_fd, struct.pack(">Q", len(_buffer.getvalue())) + _buffer.getvalue())
    except OSError:
        pass
import grader.probes
grader.probes.encode = lambda obj: _buffer.getvalue()
"""

PATCH_COMPARISONS = """
import sys, numpy.testing, torch, torch.testing
class Momentum(torch.optim.SGD):  # a wrong answer: plain SGD, no momentum
    def __init__(self, params, lr=1e-3, momentum=0.9):
        super().__init__(params, lr=lr)
_never = lambda *args, **kwargs: None
torch.testing.assert_close = numpy.testing.assert_allclose = _never
torch.equal = lambda *args: False
torch.allclose = lambda *args, **kwargs: True
_tests = sys.modules.get("tests.graded.test_part1_optimisers")
if _tests is not None:
    _tests.assert_same_trajectory = _tests.moved = _never  # the test module's globals
    _tests.test_momentum_matches_torch_sgd.__code__ = (lambda run: None).__code__
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind, code", [("forges the verdict from inside", FORGE_VERDICT),
                                        ("patches what the tests compare with", PATCH_COMPARISONS)])
def test_an_attack_on_the_verdict_fools_one_process_and_not_the_autograder(tmp_path, kind, code):
    folder = submission(tmp_path / "eve", code)
    control = local(folder / "assignment", tmp_path / "local.json", "-k", "momentum")
    assert control["score"] == 1, f"the control: in one process, the attack ({kind}) should win the point"
    report, _ = autograde(tmp_path, "--grade", str(folder), "--tests", OPTIMISERS, "-k", "momentum")
    assert report["score"] == 0 and statuses(report) == {"test_momentum_matches_torch_sgd": "failed"}, report


# ----------------------------------------------------------------------------- 3: processes that outlive grading

ESCAPE = f"""
import signal, subprocess, time
script = "import os, signal, time\\ntime.sleep(2)\\ntry:\\n    os.kill(-1, signal.SIGKILL)\\nexcept OSError:\\n    pass\\ntime.sleep(600)"
if os.fork() == 0:  # a double fork in a session of its own, that kills every process it can reach
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", script, "{MARKER}"])
    os._exit(0)
_found.append("escaped")
"""


@needs_namespaces
@pytest.mark.timeout(900)
def test_a_process_that_escapes_dies_with_its_worker_and_harms_no_one(tmp_path):
    """A double fork that leaves the session and then kills every process it can: it once outlived
    grading and, in a batch, killed later students' processes. Beside it the reference, graded at the
    same time (--jobs 2), keeps every point."""
    folder = tmp_path / "submissions"
    submission(folder / "ian", evidence(ESCAPE))
    submission(folder / "jo", solved=True)
    batch(folder, tmp_path / "scores.csv", time_limit=600, jobs=2, tests=[OPTIMISERS], allow_root=ALLOW_ROOT)
    rows = read_scores(tmp_path / "scores.csv")
    assert (rows["ian"]["status"], rows["ian"]["total"]) == ("ok", "0.0")
    assert (rows["jo"]["status"], rows["jo"]["total"], rows["jo"]["possible"]) == ("ok", "3.0", "3.0"), rows["jo"]
    assert "escaped" in outputs(json.loads((tmp_path / "scores.csv.d" / "ian.json").read_text()))


# ----------------------------------------------------------------------------- 4: resources

HOARD = """
try:
    _hoard = torch.ones(8 * 2**30, dtype=torch.uint8)  # 8 GiB, past the 4 GiB of address space
    _found.append("allocated 8 GiB")
except (MemoryError, RuntimeError) as exc:
    _found.append(f"refused: {type(exc).__name__}")
import os
try:
    with open(os.path.join(os.environ["HOME"], "big.bin"), "wb") as big:
        for _ in range(200):
            big.write(bytes(2**20))
    _found.append("wrote 200 MiB")
except OSError as exc:
    _found.append(f"file stopped at {os.path.getsize(os.path.join(os.environ['HOME'], 'big.bin'))} bytes: {exc}")
started = 0
for _ in range(600):
    try:
        if os.fork() == 0:
            import time
            time.sleep(120)
            os._exit(0)
        started += 1
    except OSError:
        break
_found.append(f"started {started} processes")
"""


@pytest.mark.timeout(600)
def test_memory_files_and_processes_are_limited_and_the_rest_is_graded(tmp_path):
    """8 GiB of memory, a 200 MiB file, 600 processes, in one test of the reference: each stopped at its
    limit, that test fails, the other passes."""
    folder = submission(tmp_path / "kim", "\nimport torch\n" + evidence(HOARD),
                        solved=True)
    report, _ = autograde(tmp_path, "--grade", str(folder), "--tests", OPTIMISERS, "-k", "momentum or rmsprop")
    assert statuses(report) == {"test_momentum_matches_torch_sgd": "failed", "test_rmsprop_matches_torch": "passed"}
    text = outputs(report)
    assert "refused: " in text and "allocated 8 GiB" not in text, text
    assert f"file stopped at {FILE_LIMIT} bytes" in text, text
    started = int(text.split("started ")[1].split()[0])
    assert 0 < started < 600, text


FLOOD = """
import os
for _ in range(256):
    os.write(1, b"x" * 2**20)  # 256 MiB on its output
"""


@pytest.mark.timeout(600)
def test_a_flood_of_output_does_not_grow_the_grader(tmp_path):
    """256 MiB of output once made the grader peak at 2.6 GB: the worker's output goes to a file that stops
    at 64 MiB, of which the grader reads the tail. The grader's peak is its own high-water mark (VmHWM)."""
    report, peak_kib = graded_with_peak(submission(tmp_path / "max", FLOOD), tmp_path / "results.json", "momentum")
    print(f"the grader's peak RSS: {peak_kib / 1024:.0f} MiB")
    assert report["score"] == 0
    assert peak_kib < 700 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"  # torch and pytest: about 250 MiB


def graded_with_peak(folder: Path, results: Path, keyword: str) -> tuple[dict, int]:
    """The report of the autograder's command, and the grader's peak RSS in KiB: its own high-water mark
    (VmHWM; ru_maxrss survives execve, so it would report the pytest process that started it)."""
    script = ("import re, sys; from grader.autograder import main; code = main(sys.argv[1:]); "
              "print('peak', re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1]); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, "--grade", str(folder), "--results", str(results),
                           "--tests", OPTIMISERS, "-k", keyword, *(["--allow-root"] if ALLOW_ROOT else [])],
                          cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(results.read_text()), int(done.stdout.split("peak ")[1].split()[0])


# ----------------------------------------------------------------------------- 5, 6 and 9: what the worker may touch and read

def reach(paths_to_write: list[Path], paths_to_read: list[Path]) -> str:
    return f"""
_found.append(f"uid {{os.getuid()}} capabilities {{open('/proc/self/status').read().split('CapEff:')[1].split()[0]}}")
for path in {[str(p) for p in paths_to_write]!r}:
    try:
        with open(path, "a") as f:
            f.write("# {MARKER}\\n")
        _found.append(f"wrote {{path}}")
    except OSError as exc:
        _found.append(f"could not write {{path}}: {{type(exc).__name__}}")
for path in {[str(p) for p in paths_to_read]!r}:
    try:
        text = open(path).read() if os.path.isfile(path) else " ".join(os.listdir(path))
        _found.append(f"read {{path}}: {{text}}")
    except OSError as exc:
        _found.append(f"could not read {{path}}: {{type(exc).__name__}}")
_found.append(f"hidden tests in the worker's folder: {{os.path.exists('tests/hidden')}}")
for path in ("/tmp/{MARKER}", "/dev/shm/{MARKER}"):
    try:
        open(path, "w").write("left behind")
    except OSError:
        pass
"""


@needs_namespaces
@pytest.mark.timeout(600)
def test_the_worker_can_change_nothing_and_read_nothing_it_should_not(tmp_path):
    """As root (as on Gradescope, or with --allow-root), a submission once appended a hook to the grader's
    conftest.py, and every worker could read the hidden tests and the reference."""
    results = tmp_path / "results" / "results.json"
    hidden = ROOT / "tests" / "hidden" / "test_part1_hidden.py"
    code = reach([ROOT / "pytest.ini", ROOT / OPTIMISERS, ROOT / "grader" / "report.py", results],
                 [hidden, ROOT / "tests" / "hidden", ROOT / "solutions" / "part1" / "optimisers.py", ROOT / "dist"])
    report, _ = autograde(tmp_path, "--grade", str(submission(tmp_path / "sub", evidence(code))), "--tests",
                          OPTIMISERS, "-k", "momentum")
    text = outputs(report)
    assert "EVIDENCE" in text, text
    assert not [line for line in text.splitlines() if line.startswith(("wrote ", "read "))], text
    assert text.count("could not write") == 4 and text.count("could not read") == 4, text
    assert "hidden tests in the worker's folder: False" in text
    if os.geteuid() == 0:
        assert "capabilities 0000000000000000" in text
    secret = [line.strip() for line in hidden.read_text().splitlines() if len(line.strip()) > 30]
    assert not [line for line in secret if line in text and line not in (ROOT / OPTIMISERS).read_text()]


CHEAT = """
import sys
sys.path.insert(0, {root!r})
try:
    from solutions.part1.optimisers import Momentum, RMSprop, Adam  # the reference, by its path
except Exception as exc:
    pass
try:
    exec(open({classmate!r}).read())  # a classmate's submission
except Exception as exc:
    pass
"""


@needs_namespaces
@pytest.mark.timeout(900)
def test_a_batch_hides_the_reference_and_the_classmates(tmp_path):
    """Batch grading once ran inside the repository, so student code could import the reference; and it
    could read the other submissions. Each cheat earns its points in one process (the control)."""
    folder = tmp_path / "submissions"
    submission(folder / "alice", solved=True)
    classmate = folder / "alice" / "assignment" / "part1" / "optimisers.py"
    mallory = submission(folder / "mallory", CHEAT.format(root=str(ROOT), classmate="/nonexistent"))
    trudy = submission(folder / "trudy", CHEAT.format(root="/nonexistent", classmate=str(classmate)))
    for cheat in (mallory, trudy):
        assert local(cheat / "assignment", tmp_path / "local.json")["score"] == 3, "the control: the cheat works here"
    batch(folder, tmp_path / "scores.csv", time_limit=600, jobs=2, tests=[OPTIMISERS], allow_root=ALLOW_ROOT)
    rows = read_scores(tmp_path / "scores.csv")
    assert {name: rows[name]["total"] for name in rows} == {"alice": "3.0", "mallory": "0.0", "trudy": "0.0"}


# ----------------------------------------------------------------------------- answers that would explode on the trusted side

BOMBS = """

import io, os, struct, sys, zipfile, torch
def _answer(obj, deflate):
    buffer = io.BytesIO()
    torch.save({"result": obj}, buffer)
    if deflate:  # the same archive, its records deflated: 256 MiB of zeros in about 256 KB
        packed = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(packed, "w") as dst:
            for info in src.infolist():
                dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
        buffer = packed
    data = buffer.getvalue()
    os.write(int(sys.argv[2]), struct.pack(">Q", len(data)) + data)  # straight to the grader, as the answer
    os._exit(0)
class Momentum:
    def __init__(self, *args, **kwargs):
        _answer([[torch.zeros(2**26)]], deflate=True)
class RMSprop:
    def __init__(self, *args, **kwargs):
        _answer([[torch.zeros(1).expand(2**34)]], deflate=False)  # 16 G elements on one float of storage
"""


@pytest.mark.timeout(600)
def test_an_answer_that_would_explode_in_the_grader_is_refused(tmp_path):
    """A deflated answer (64 GiB once unpacked, within the 64 MiB limit) and a stride-0 view of 16 G elements
    once took the grader to 23 GB and the machine's OOM killer: the archive and every tensor are checked
    before anything reads them."""
    report, peak_kib = graded_with_peak(submission(tmp_path / "bomb", BOMBS), tmp_path / "results.json",
                                        "momentum or rmsprop")
    assert report["score"] == 0
    text = outputs(report)
    assert "a compressed or oversized archive" in text and "more elements than the limit" in text, text
    assert peak_kib < 700 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"


# ----------------------------------------------------------------------------- what a worker may reach

def ipc_keys() -> set[str]:
    return set(subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout.split())


REACH_OUT = """
import ctypes, glob, socket
libc = ctypes.CDLL(None, use_errno=True)
shm = libc.shmget(0x5eed, 2**20, 0o1666)
_found.append(f"shared memory segment: {{shm}}")
done = subprocess.run(["git", "-C", {root!r}, "show", "HEAD:tests/hidden/test_part1_hidden.py"], capture_output=True, text=True)
_found.append(f"git show of the hidden tests: exit {{done.returncode}}, {{len(done.stdout)}} characters")
others = [p for p in glob.glob("/tmp/*/work/assignment") + glob.glob("/tmp/*/private") if not os.getcwd().startswith(p.rsplit("/", 2)[0])]
_found.append(f"other graders' folders: {{others}}")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"{marker}")
    _found.append("reached the host's loopback")
except OSError as exc:
    _found.append(f"network: {{type(exc).__name__}}")
"""


@needs_namespaces
@pytest.mark.timeout(600)
def test_the_worker_reaches_no_repository_history_no_other_grader_no_ipc_and_no_network(tmp_path):
    """The repository's .git once gave away the hidden tests and the reference; other graders' folders under
    /tmp gave a batch a classmate's code; System V shared memory outlived grading; and the host's
    loopback was reachable."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    before = ipc_keys()
    code = "\nimport subprocess\n" + evidence(REACH_OUT.format(root=str(ROOT), port=listener.getsockname()[1],
                                                                 marker=MARKER))
    report, _ = autograde(tmp_path, "--grade", str(submission(tmp_path / "sub", code)), "--tests", OPTIMISERS,
                          "-k", "momentum")
    text = outputs(report)
    assert "EVIDENCE" in text, text
    assert "git show of the hidden tests: exit 128, 0 characters" in text, text
    assert "other graders' folders: []" in text, text
    assert "network: OSError" in text or "network: ConnectionRefusedError" in text, text
    with pytest.raises(TimeoutError):
        listener.accept()
    assert ipc_keys() == before, "a shared memory segment outlived the worker"


HOG = """
import mmap
children = []
for _ in range(3):  # 3 x 1.5 GiB, each under the 4 GiB address space of one process
    pid = os.fork()
    if pid == 0:
        block = mmap.mmap(-1, 3 * 2**29)
        block.write(b"x" * (3 * 2**29))
        os._exit(0)
    children.append(pid)
_found.append(f"children: {[os.waitpid(pid, 0)[1] for pid in children]}")
os.chdir(os.environ["HOME"])
for _ in range(3000):  # a tree too deep for a recursive cleanup
    os.mkdir("d")
    os.chdir("d")
_found.append("a deep tree")
"""


@pytest.mark.skipif(os.geteuid() != 0 or not ISOLATED, reason="the memory cgroup and the tmpfs home need root")
@pytest.mark.timeout(600)
def test_memory_over_several_processes_and_a_deep_tree_stay_in_the_sandbox(tmp_path):
    """Three processes of 1.5 GiB each held 4.95 GiB together, and a 3000-deep tree in the worker's home
    crashed the grader's cleanup: the worker tree's memory is one cgroup's, and its home a tmpfs."""
    before = set(Path(tempfile_dir()).glob("grade-*"))
    folder = submission(tmp_path / "hog", evidence(HOG), solved=True)
    report, done = autograde(tmp_path, "--grade", str(folder), "--tests", OPTIMISERS, "-k", "momentum or rmsprop")
    assert done.returncode == 0, done.stderr[-2000:]
    assert statuses(report) == {"test_momentum_matches_torch_sgd": "failed", "test_rmsprop_matches_torch": "passed"}
    text = outputs(report)
    assert "children: [0, 0, 0]" not in text, "three processes held 4.5 GiB together"
    assert set(Path(tempfile_dir()).glob("grade-*")) == before, "the grader left its folder behind"


def tempfile_dir() -> str:
    import tempfile
    return tempfile.gettempdir()
