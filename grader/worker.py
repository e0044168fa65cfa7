"""The sandboxed worker: the only process of the autograder that imports student code.

    python -m grader.worker REQUESTS RESPONSES PACKAGE    # started by grader/sandbox.py, never by hand

It reads requests from the file descriptor REQUESTS and answers each on RESPONSES, one at a time,
until its input ends. A message is a frame: its length (8 bytes, big-endian), then ``torch.save``
bytes (``grader/probes.py``). A request is ``{"module", "probe", "arguments"}``; the answer is
``{"result": data}``, or ``{"error": text}`` when the student's code raised (the worker goes on).

Nothing here is trusted: student code can replace any of it, write anything on RESPONSES, or end the
process. The trusted side reads an answer as data with ``torch.load(weights_only=True)`` and checks it
itself, so all that student code can change is the data of its own answers.
"""
from __future__ import annotations

import os
import struct
import sys
import traceback

HEADER = struct.Struct(">Q")  # the length of the frame that follows
ERROR_CHARS = 4000  # of a traceback


def read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``; None at end of input."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, data: bytes) -> None:
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str]) -> int:
    requests, responses, package = int(argv[0]), int(argv[1]), argv[2]
    from grader.probes import MAX_BYTES, ProbeError, decode, encode, loader, resolve
    load = loader(package)
    while (header := read_exactly(requests, HEADER.size)) is not None:
        (size,) = HEADER.unpack(header)
        if size > MAX_BYTES or (data := read_exactly(requests, size)) is None:
            return 2
        request = decode(data)
        try:
            function = resolve(request["module"], request["probe"])
            answer = encode({"result": function(load, **request["arguments"])})
        except BaseException as exc:  # noqa: BLE001 - the student's exception, SystemExit included, is the answer
            text = str(exc) if isinstance(exc, ProbeError) else traceback.format_exc(limit=-6)
            answer = encode({"error": text[-ERROR_CHARS:]})
        write_frame(responses, answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
