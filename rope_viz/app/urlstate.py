"""A page's view as URL query parameters and back: pure encode/decode, no Streamlit.

A page declares a schema {widget key: kind}; its state is written into the query string under the
same keys, so a pasted URL restores models, image, resolution, layer, head, query, method... Kinds:
"int", "float", "bool", "str", "list" (of str), "list_int". Values that do not parse raise
UrlStateError with one sentence; values outside a widget's choices are the page's to check.
"""
from __future__ import annotations

import math
from pathlib import PurePath

from rope_viz.errors import RopeVizError

KINDS = ("int", "float", "bool", "str", "list", "list_int")
LIST_SEPARATOR = ","  # names of models, classes and sizes contain no comma


class UrlStateError(RopeVizError):
    """A query parameter that cannot be read; the message is one sentence for the UI."""


def encode(value, kind: str) -> str:
    """One widget value as query-parameter text (paths by file name: a URL never names a local folder)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown URL kind {kind!r}; valid: {', '.join(KINDS)}.")
    if kind == "bool":
        return "1" if value else "0"
    if kind == "float":
        return repr(float(value))
    if kind == "int":
        return str(int(value))
    if kind in ("list", "list_int"):
        return LIST_SEPARATOR.join(encode(v, "int" if kind == "list_int" else "str") for v in value)
    return PurePath(value).name if isinstance(value, PurePath) else str(value)


def decode(text: str, kind: str, name: str = "value"):
    """Query-parameter text back to a widget value of `kind`; UrlStateError when it does not parse."""
    if kind not in KINDS:
        raise ValueError(f"Unknown URL kind {kind!r}; valid: {', '.join(KINDS)}.")
    try:
        if kind == "bool":
            if text not in ("0", "1", "true", "false"):
                raise ValueError
            return text in ("1", "true")
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind == "list":
            return [part for part in text.split(LIST_SEPARATOR) if part]
        if kind == "list_int":
            return [int(part) for part in text.split(LIST_SEPARATOR) if part]
    except ValueError:
        raise UrlStateError(f"The link's {name}={text!r} is not a valid {kind.replace('_', ' of ')}; "
                            f"the default is used instead.") from None
    return text


def encode_state(state: dict, schema: dict[str, str]) -> dict[str, str]:
    """The schema's keys present in `state` as {key: text}, in schema order (absent keys stay default)."""
    return {key: encode(state[key], kind) for key, kind in schema.items() if key in state and state[key] is not None}


def decode_params(params: dict[str, str], schema: dict[str, str]) -> tuple[dict, list[str]]:
    """The schema's keys found in `params`, decoded -> ({key: value}, [one sentence per bad parameter]).

    Keys outside the schema are ignored (another page's state, or a tracking tag).
    """
    values, problems = {}, []
    for key, kind in schema.items():
        if key not in params:
            continue
        try:
            values[key] = decode(params[key], kind, key)
        except UrlStateError as err:
            problems.append(str(err))
    return values, problems


def match_choice(value, choices, name: str = "value"):
    """The choice `value` names (a path by its file name, a number by its text: a select box of
    "auto" or sizes); UrlStateError when there is none."""
    for choice in choices:
        if choice == value or (isinstance(choice, PurePath) and choice.name == value) or str(choice) == value:
            return choice
    raise UrlStateError(f"The link's {name}={value!r} is not one of the choices here; the default is used instead.")
