"""Probes: the only place where a graded test runs student code.

A graded test has two halves, side by side in its test file:

- a **probe**, marked ``@probe``, runs the student's code on inputs it is given and returns plain data
  (tensors, numbers, strings, lists and dicts of them). Its first argument, ``load``, imports a module
  of the package under test: ``load("part1.models")``.
- the **check**, the test itself, chooses the inputs (the weights too), calls the probe through the
  ``run`` fixture and compares what comes back with values it computes itself::

      @probe
      def rnn_hidden_states(load, weights, x):           # student code runs here
          model = load("part1.models").VanillaRNN(...)
          model.load_state_dict(weights)
          ...
          return torch.stack(states)

      @pytest.mark.points(2, question="1.2")
      def test_rnn_step_matches_torch(run):               # trusted: never imports student code
          weights, x = ...
          states = run(rnn_hidden_states, weights=weights, x=x)
          torch.testing.assert_close(states, reference(weights, x))

On a student's machine ``run`` calls the probe in the same process. The autograder runs the checks in
a process that never imports student code and sends every probe to a sandboxed worker
process; whatever the student's code does there, it can only change the data that
comes back. Both ways, arguments and results cross as bytes: ``torch.save`` out, and
``torch.load(weights_only=True)`` in, which rebuilds tensors and plain containers and never calls
arbitrary code. So a probe behaves the same locally and in the sandbox.

A probe must live in a public test module (``tests/graded``): the worker loads probes from there
only, so a hidden test uses the public probes, and its checks stay out of the sandbox.
"""
from __future__ import annotations

import importlib
import io
import traceback
import zipfile
from typing import Any, Callable

import torch

PUBLIC = "tests.graded."  # the modules a worker may load probes from
MAX_BYTES = 64 * 2**20  # the largest message either way: far more than any probe needs
MAX_ELEMENTS = 4 * 2**20  # tensor elements in one message (the largest answer holds about 40,000)
MAX_ITEMS = 100_000  # numbers, strings and containers in one message


class ProbeError(Exception):
    """The probe failed in the student's code (an exception, a failed import); the message says where."""


def probe(function: Callable) -> Callable:
    """Mark ``function(load, **arguments)`` as a probe (see the module's docstring)."""
    function.__probe__ = True
    return function


def resolve(module: str, name: str) -> Callable:
    """The probe ``name`` of the public test module ``module``; ValueError for anything else."""
    if not module.startswith(PUBLIC):
        raise ValueError(f"probes come from {PUBLIC}* only, not {module}")
    function = getattr(importlib.import_module(module), name, None)
    if not getattr(function, "__probe__", False):
        raise ValueError(f"{module}.{name} is not a probe")
    return function


def encode(obj: Any) -> bytes:
    """Plain data as bytes (``torch.save``). Tensors are detached; a sparse tensor must be made dense
    by the probe first. Raises TypeError for anything ``decode`` could not read back."""
    buffer = io.BytesIO()
    torch.save(_plain(obj), buffer)
    data = buffer.getvalue()
    if len(data) > MAX_BYTES:
        raise ValueError(f"{len(data)} bytes of data, more than the limit of {MAX_BYTES // 2**20} MiB")
    return data


def decode(data: bytes) -> Any:
    """The data ``encode`` wrote; raises ValueError for anything else.

    ``weights_only=True`` refuses anything but tensors and plain containers. Before it, the archive must
    be as ``torch.save`` writes it (stored, not compressed: a deflated answer of 64 MiB could unpack to
    64 GiB); after it, every tensor must be a plain dense CPU tensor whose elements all have storage (no
    stride-0 view of a huge shape on one element), with MAX_ELEMENTS in all. So no answer can make the
    trusted side allocate more than a bounded multiple of its size.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            records = archive.infolist()
    except zipfile.BadZipFile:
        raise ValueError("not an archive written by torch.save") from None
    if any(r.compress_type != zipfile.ZIP_STORED for r in records) or sum(r.file_size for r in records) > MAX_BYTES:
        raise ValueError("a compressed or oversized archive")
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch refuses
        raise ValueError(f"not plain data: {type(exc).__name__}") from None
    budget = {"elements": MAX_ELEMENTS, "items": MAX_ITEMS}
    _check_plain(obj, budget, depth=0)
    return obj


def _check_plain(obj: Any, budget: dict[str, int], depth: int) -> None:
    budget["items"] -= 1
    if budget["items"] < 0 or depth > 32:
        raise ValueError("too many or too deeply nested items")
    if isinstance(obj, torch.Tensor):
        if type(obj) is not torch.Tensor or obj.layout != torch.strided or obj.device.type != "cpu":
            raise ValueError(f"a {type(obj).__name__} on {obj.device} ({obj.layout}), not a plain CPU tensor")
        budget["elements"] -= obj.numel()
        if budget["elements"] < 0 or obj.untyped_storage().nbytes() < obj.numel() * obj.element_size():
            raise ValueError("a tensor with more elements than the limit, or than its storage holds")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError("a dict key that is not a string")
            _check_plain(value, budget, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            _check_plain(value, budget, depth + 1)
    elif not (obj is None or isinstance(obj, (bool, int, float, str))):
        raise ValueError(f"a {type(obj).__name__}")


def _plain(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided:
            raise TypeError("a probe returns dense tensors: call .to_dense() first")
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a probe returns tensors, numbers, strings, lists and dicts, not {type(obj).__name__}")


def loader(package: str) -> Callable[[str], Any]:
    """``load("part1.models")`` imports that module of ``package``; a failed import (a syntax error, an
    exception or ``sys.exit`` at import time) raises ProbeError with the student's traceback."""
    def load(module: str):
        name = f"{package}.{module}"
        try:
            return importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - a student's SystemExit must not end the run
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ProbeError(f"importing {name} failed:\n{traceback.format_exc(limit=-3)}") from None
    return load


def call(function: Callable, load: Callable, arguments: dict) -> Any:
    """Run a probe here, with its arguments and its result passed through bytes as in the sandbox."""
    result = function(load, **decode(encode(arguments)))
    return decode(encode(result))
