"""URL state: every kind round-trips, bad text is one sentence, paths travel by file name only."""
from __future__ import annotations

from pathlib import Path

import pytest

from rope_viz.app import urlstate
from rope_viz.errors import RopeVizError

SCHEMA = {"m": "str", "r": "int", "o": "float", "b": "bool", "l": "list", "s": "list_int", "p": "str"}


def test_every_kind_round_trips():
    state = {"m": "scenes-rope-mixed", "r": 192, "o": 0.35, "b": True, "l": ["a b", "c"], "s": [32, 64, 448],
             "p": Path("/somewhere/private/scene_1_cross.png"), "not_in_schema": 3}
    encoded = urlstate.encode_state(state, SCHEMA)
    assert encoded == {"m": "scenes-rope-mixed", "r": "192", "o": "0.35", "b": "1", "l": "a b,c", "s": "32,64,448",
                       "p": "scene_1_cross.png"}  # a URL never names a local folder
    decoded, problems = urlstate.decode_params({**encoded, "utm": "x"}, SCHEMA)
    assert problems == []
    assert decoded == {**{k: v for k, v in state.items() if k not in ("p", "not_in_schema")}, "p": "scene_1_cross.png"}
    assert urlstate.match_choice("scene_1_cross.png", [Path("/a/scene_0.png"), state["p"]]) == state["p"]


def test_absent_keys_stay_default_and_none_is_not_written():
    assert urlstate.encode_state({"r": None, "b": False}, SCHEMA) == {"b": "0"}
    assert urlstate.decode_params({}, SCHEMA) == ({}, [])


@pytest.mark.parametrize("key,text", [("r", "12px"), ("o", "nan"), ("b", "yes"), ("s", "32,x")])
def test_bad_text_is_one_sentence_and_the_rest_still_restores(key, text):
    decoded, problems = urlstate.decode_params({key: text, "m": "ok"}, SCHEMA)
    assert decoded == {"m": "ok"}
    assert len(problems) == 1 and problems[0].startswith(f"The link's {key}=") and problems[0].endswith("instead.")


def test_unknown_choice_and_kind():
    with pytest.raises(RopeVizError, match="not one of the choices"):
        urlstate.match_choice("scenes-nope", ["scenes-ape"], "att_model_a")
    with pytest.raises(ValueError, match="valid: int, float"):
        urlstate.encode(1, "complex")


def test_a_number_choice_is_found_by_its_text():
    assert urlstate.match_choice("32", ["auto", 16, 32]) == 32
    assert urlstate.match_choice("auto", ["auto", 16, 32]) == "auto"
