"""The dropped-names header value (adapters/dropped.py): safe to write whatever the client sent."""

from __future__ import annotations

from urllib.parse import unquote

from adapters.dropped import MAX_HEADER, MAX_NAME, header_value


def test_plain_names_and_field_paths_are_kept_as_they_are() -> None:
    assert header_value(["metadata", "tools[2].cache_control", "text.verbosity"]) == (
        "metadata,tools[2].cache_control,text.verbosity"
    )
    assert header_value([]) == ""


def test_control_characters_separators_and_non_ascii_are_escaped_reversibly() -> None:
    names = ["a\r\nb", "c,d", "100%", "é", "tab\there", "sp ace"]
    value = header_value(names)
    assert value == "a%0D%0Ab,c%2Cd,100%25,%C3%A9,tab%09here,sp%20ace"
    assert all(0x21 <= ord(c) <= 0x7E for c in value)  # visible ASCII only: any server writes it
    assert [unquote(part) for part in value.split(",")] == names


def test_names_and_the_value_are_bounded() -> None:
    assert header_value(["x" * 1000]) == "x" * MAX_NAME
    value = header_value([f"{n:03}" + "y" * 100 for n in range(100)])
    parts = value.split(",")
    assert len(value) <= MAX_HEADER + len(",+100 more")
    assert parts[-1] == f"+{100 - (len(parts) - 1)} more"
    assert parts[:-1] == [f"{n:03}" + "y" * (MAX_NAME - 3) for n in range(len(parts) - 1)]
