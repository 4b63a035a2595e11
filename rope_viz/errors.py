"""The one base class of every error meant for the user (pages catch only this).

Each subclass carries one sentence that the UI shows as it is. Anything else that escapes is a
bug and should fail loudly (in tests, as a traceback).
"""
from __future__ import annotations


class RopeVizError(ValueError):
    """A user-facing problem: bad input, a missing file, a model that cannot load, too little memory.

    It derives from ValueError so library callers that already catch ValueError keep working;
    pages catch RopeVizError only, so a plain ValueError from a bug is never shown as a polite message.
    """


class InputError(RopeVizError):
    """A setting the user chose (a resolution, a size, a choice from a list) that cannot be used."""


class FamilyError(RopeVizError):
    """A model whose positional scheme this tool cannot read; one sentence for the UI (see rope_viz/adapters)."""


def check_options(given, valid, where: str) -> None:
    """Raise TypeError naming the valid options when `given` holds a name that is not one of them.

    A misspelt option (n_steps for steps) is a caller's bug, not bad input: it must never be ignored.
    """
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise TypeError(f"{where} got unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}.")
