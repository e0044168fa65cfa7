"""The command lines of the course: one dataclass of settings per command, and argparse made from it.

Every setting of a command is a field of one dataclass, with its default: the only place the
default is written. ``setting(default, help, rule...)`` adds the help text and the rule the value
must follow. From the dataclass, ``parse(Config, argv)`` makes the options (dashes, the default
shown in ``--help``; the underscore spelling and any old name stay as hidden aliases) and returns
the settings and the names typed on the command line; ``check(config)`` tests every rule.

A user's mistake is a ``UserError`` (a ``ValueError``): ``run(main)`` prints it as one line,
``error: ...``, naming the option, the value and the rule, and exits with status 2 (argparse's
convention), before any data is loaded or any step trained. Tracebacks are left for bugs.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import MISSING, asdict, field, fields
from pathlib import Path
from typing import Any, Callable

import torch


class UserError(ValueError):
    """A bad setting or file given by the user: reported as one line and exit status 2."""


def setting(default: Any, help: str = "", *, at_least: float | None = None, above: float | None = None,
            at_most: float | None = None, below: float | None = None, choices: Any = None, flag: str | None = None,
            aliases: tuple = (),
            parse: Callable | None = None, changeable: bool = False) -> Any:
    """A dataclass field with its rule: ``at_least`` (>=), ``above`` (>), ``at_most`` (<=), ``below`` (<), ``choices``.

    ``flag`` is the option's name when it is not the field's; ``aliases`` are old spellings (hidden);
    ``parse`` reads one word of the command line; ``changeable`` settings may differ on ``--resume``.
    """
    rule = dict(help=help, at_least=at_least, above=above, at_most=at_most, below=below, choices=choices, flag=flag,
                aliases=aliases, parse=parse, changeable=changeable)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=rule)
    return field(default=default, metadata=rule)


def option(f) -> str:
    """A field -> its command-line option: train_steps -> --train-steps (or its ``flag``)."""
    return "--" + (f.metadata.get("flag") or f.name).replace("_", "-")


def default_of(f) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A bad command line in one line (argparse would print the long usage first)."""
        self.exit(2, f"error: {message} (see --help)\n")


def add_fields(p: argparse.ArgumentParser, cls, suppress: bool = False, skip: tuple[str, ...] = ()) -> None:
    """Add an option for each field of dataclass ``cls`` (but ``skip``); with ``suppress``, untyped ones stay unset."""
    for f in fields(cls):
        if f.name in skip:
            continue
        meta, default = f.metadata, default_of(f)
        kwargs = {"dest": f.name} if suppress else {"dest": f.name, "default": default}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            sample = default[0] if isinstance(default, list) and default else default
            kwargs["type"] = meta.get("parse") or (str if sample is None else type(sample))
            if isinstance(default, list):
                kwargs["nargs"] = "+"
            choices = meta.get("choices")
            kwargs["metavar"] = "{" + ",".join(choices) + "}" if choices else (meta.get("flag") or f.name).upper()
        help_text = meta.get("help", "")
        p.add_argument(option(f), **kwargs, help=f"{help_text} (default: {shown(default)})".strip())
        hidden = {"--" + name for name in (f.name, *meta.get("aliases", ()))} - {option(f)}
        hidden |= {name.replace("_", "-") for name in hidden} - {option(f)}
        if hidden and not isinstance(default, bool):
            p.add_argument(*sorted(hidden), **{**kwargs, "default": argparse.SUPPRESS}, help=argparse.SUPPRESS)


def parser_for(cls, description: str | None, suppress: bool = False, skip: tuple[str, ...] = ()) -> Parser:
    """The argparse parser of dataclass ``cls``; with ``suppress``, options not typed stay unset."""
    p = Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
               argument_default=argparse.SUPPRESS if suppress else None)
    add_fields(p, cls, suppress, skip)
    return p


def parse(cls, argv: list[str] | None, description: str | None = None,
          extra: Callable[[argparse.ArgumentParser], None] | None = None,
          skip: tuple[str, ...] = ()) -> tuple[Any, set[str], dict]:
    """The command line -> (settings ``cls(...)``, the names of the fields typed, the extra options).

    ``extra(parser)`` adds options that are not settings (``--resume``...); they come back in a dict.
    Fields in ``skip`` are not options: they keep their defaults.
    """
    argv = sys.argv[1:] if argv is None else argv
    names = {f.name for f in fields(cls)} - set(skip)
    parsers = [parser_for(cls, description, skip=skip), parser_for(cls, description, suppress=True, skip=skip)]
    for p in parsers:
        if extra is not None:
            extra(p)
    args = vars(parsers[0].parse_args(argv))
    given = set(vars(parsers[1].parse_args(argv))) & names
    config = cls(**{k: v for k, v in args.items() if k in names})
    return config, given, {k: v for k, v in args.items() if k not in names}


def check(config: Any) -> Any:
    """Test every field's rule; a broken one raises ``UserError`` naming option, value and rule."""
    for f in fields(config):
        meta, value = f.metadata, getattr(config, f.name)
        for v in value if isinstance(value, list) else [value]:
            if meta.get("choices") is not None and v not in meta["choices"]:
                raise UserError(f"{option(f)} {v} is not one of {', '.join(map(str, meta['choices']))}")
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if number and meta.get("at_least") is not None and not v >= meta["at_least"]:
                raise UserError(f"{option(f)} {v} is too small: it must be at least {meta['at_least']}")
            if number and meta.get("above") is not None and not v > meta["above"]:
                raise UserError(f"{option(f)} {v} is too small: it must be above {meta['above']}")
            if number and meta.get("at_most") is not None and not v <= meta["at_most"]:
                raise UserError(f"{option(f)} {v} is too large: it must be at most {meta['at_most']}")
            if number and meta.get("below") is not None and not v < meta["below"]:
                raise UserError(f"{option(f)} {v} is too large: it must be below {meta['below']}")
        if isinstance(value, list) and not value:
            raise UserError(f"{option(f)} needs at least one value")
    return config


def check_device(name: str) -> torch.device:
    """A device torch knows and this machine has, or a ``UserError`` that says which ones are."""
    from .common import resolve_device
    try:
        return resolve_device(name)
    except (RuntimeError, ValueError) as exc:
        if "CUDA" in str(exc):
            raise UserError(f"--device {name}: torch sees no CUDA GPU here; use --device cpu") from None
        raise UserError(f"--device {name} is not a device: use auto (CUDA when available), cpu or cuda") from None


def check_writable(path: str | os.PathLike, name: str = "--out", folder: bool = False) -> Path:
    """Make sure a file (or, with ``folder``, a folder) can be written at ``path`` before any work.

    The test writes a temporary file there, and removes it and any folder it had to make.
    """
    path = Path(path)
    where = path if folder else path.parent
    made = []
    try:
        if path.exists() and (path.is_dir() != folder):
            raise OSError(f"it is a {'folder' if path.is_dir() else 'file'}")
        for parent in [*reversed(where.parents), where]:
            if not parent.exists():
                parent.mkdir()
                made.append(parent)
        tempfile.TemporaryFile(dir=where).close()
    except OSError as exc:
        raise UserError(f"{name} {path} cannot be written ({exc.strerror or exc}); choose another {name}") from None
    finally:
        for parent in reversed(made):
            parent.rmdir()
    return path


def memory_limit() -> int:
    """Bytes of memory of this machine (or 16 GB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def check_memory(estimate: int, what: str, device: torch.device) -> None:
    """Refuse a run whose tensors would not fit; warn when they take more than a quarter of memory."""
    total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else memory_limit()
    if estimate > total:
        raise UserError(f"{what} needs about {estimate / 2**30:.1f} GiB, more than the {total / 2**30:.1f} GiB "
                        f"of {device.type}; make it smaller")
    if estimate > total / 4:
        print(f"warning: {what} needs about {estimate / 2**30:.1f} GiB of the {total / 2**30:.1f} GiB of "
              f"{device.type}; it will be slow", file=sys.stderr)


def load_checkpoint(path: str | os.PathLike, keys: tuple[str, ...], map_location: Any = "cpu") -> dict:
    """``torch.load(path, weights_only=True)``, or a one-line ``UserError`` naming the file and what to do."""
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
        missing = [k for k in keys if not isinstance(saved, dict) or k not in saved]
    except FileNotFoundError:
        raise UserError(f"--resume: no checkpoint at {path}; start the run without --resume") from None
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
        raise UserError(f"{path} is damaged or not a checkpoint ({type(exc).__name__}); delete it to start the run "
                        f"over, or choose another --out") from None
    if missing:
        raise UserError(f"{path} is not a checkpoint of this command (it has no {', '.join(missing)}); "
                        f"delete it or choose another --out")
    return saved


def resumed_config(cls, saved: dict, config: Any, given: set[str], changeable: tuple[str, ...] | None = None,
                   source: str = "the checkpoint") -> Any:
    """The settings saved in ``source`` (a checkpoint, a result file), with the typed ones that may change:
    ``changeable`` (default: the fields marked so). A typed one that may not change and differs is a
    ``UserError`` naming both values."""
    kept = {f.name for f in fields(cls)}
    values = {k: v for k, v in saved.items() if k in kept}
    free = {f.name: option(f) for f in fields(cls)
            if (f.metadata.get("changeable") if changeable is None else f.name in changeable)}
    for f in fields(cls):
        typed, before = getattr(config, f.name), values.get(f.name, default_of(f))
        if f.name in given and typed != before:
            if f.name not in free:
                raise UserError(f"--resume: {source} was made with {option(f)} {shown(before)}, not "
                                f"{shown(typed)}; only {', '.join(free.values())} may change")
            values[f.name] = typed
    return cls(**values)


def command(module: str, config: Any, given: set[str], extra: list[str] = ()) -> str:
    """The command line that runs ``module`` with the typed settings of ``config``."""
    words = ["python", "-m", module]
    for f in fields(config):
        if f.name in given:
            value = getattr(config, f.name)
            if isinstance(value, bool):
                words.append(option(f) if value else f"--no-{option(f)[2:]}")
            else:
                words += [option(f), *map(str, value if isinstance(value, list) else [value])]
    return shlex.join([*words, *extra])


def done_futures(futures: set, poll: float = 0.2) -> set:
    """Those of ``futures`` (concurrent.futures) that are done, after a sleep of ``poll`` seconds if none is.

    Polled, not waited on with ``concurrent.futures.wait``: a KeyboardInterrupt (Ctrl-C) raised inside
    wait() can leave a future's lock held, and the pool's thread, which the interpreter joins at exit,
    blocked on it for ever. Raised in the sleep, it holds nothing.
    """
    done = {future for future in futures if future.done()}
    if not done:
        time.sleep(poll)
        done = {future for future in futures if future.done()}
    return done


class StopFlag:
    """Ctrl-C asks the training loop to stop after the step it is in (a second Ctrl-C stops at once).

    ``with StopFlag() as stop:`` ... ``if stop: save and stop``. Outside the main thread it does nothing.
    """

    def __init__(self, quiet: bool = False):
        self.asked, self.previous, self.quiet = False, None, quiet

    def __bool__(self) -> bool:
        return self.asked

    def _handler(self, signum, frame):
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        if not self.quiet:
            print("\nstopping after this step (Ctrl-C again to stop at once, without a checkpoint)", file=sys.stderr)

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


class Interrupted(KeyboardInterrupt):
    """The run stopped at Ctrl-C after writing its checkpoint; ``str`` is what to type to resume."""


def run(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
    """Run a command's ``main``: a ``UserError`` is one line and exit 2, an ``Interrupted`` run exit 130."""
    try:
        main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    return 0


__all__ = ["UserError", "setting", "option", "parse", "check", "check_device", "check_writable", "check_memory",
           "load_checkpoint", "resumed_config", "command", "StopFlag", "Interrupted", "run", "asdict"]
