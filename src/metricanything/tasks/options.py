"""Options of a command as a dataclass, and the command line that reproduces them.

A task's options dataclass marks each field that a ``metricanything`` flag sets with :func:`option`; from
that, :func:`command_line` writes the equivalent command of any options value (non-default fields only).
The quickstart prints every stage's command this way, and ``tests/test_cli_commands.py`` parses each one back
through the real command's parser to check that it gives the same options.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Iterable
from typing import Any, Literal

Many = Literal["repeat", "nargs"] | None


def option(
    flag: str,
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    words: Callable[[Any], Iterable[str] | str] | None = None,
    many: Many = None,
    invert: bool = False,
    always: bool = False,
) -> Any:
    """A dataclass field set by command-line ``flag``.

    ``words`` turns the value into its word(s) (default ``str``; floats as ``%g``); ``many="repeat"`` writes
    ``flag word`` per item, ``many="nargs"`` writes ``flag word word ...``; a bool without ``words`` is a switch
    (``invert``: the flag sets it to False, e.g. ``--quiet`` for ``progress``); ``always`` writes the flag even
    at the default (required flags).
    """
    meta = {"flag": flag, "words": words, "many": many, "invert": invert, "always": always}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _word(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def flag_words(options: Any) -> list[str]:
    """The flags and values of every flagged field of ``options`` that differs from its default (or ``always``)."""
    words: list[str] = []
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if dataclasses.is_dataclass(value):  # nested options (e.g. the intrinsics flags of ``infer``)
            words += flag_words(value)
            continue
        meta = f.metadata
        if "flag" not in meta:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value == default and not meta["always"]:
            continue
        if isinstance(value, bool) and meta["words"] is None and meta["many"] is None:  # a switch
            words += [meta["flag"]] if value != meta["invert"] else []
            continue
        if value is None:
            continue
        shown = meta["words"](value) if meta["words"] else value
        if meta["many"] == "repeat":
            words += [w for item in shown for w in (meta["flag"], _word(item))]
        elif meta["many"] == "nargs":
            words += [meta["flag"], *(_word(item) for item in shown)]
        else:
            words += [meta["flag"], _word(shown)]
    return words


def command_line(command: str, options: Any, *leading: Any) -> str:
    """``metricanything COMMAND [LEADING ...] FLAGS`` for ``options``, quoted for a POSIX shell."""
    words = ["metricanything", command, *map(str, leading), *flag_words(options)]
    return " ".join(shlex.quote(w) for w in words)


__all__ = ["command_line", "flag_words", "option"]
