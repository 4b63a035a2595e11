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
