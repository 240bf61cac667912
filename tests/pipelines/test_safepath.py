"""Names from object-store manifests: what may become a local path, and what is refused."""

from __future__ import annotations

import os

import pytest

from pipelines.safepath import UnsafeName, check_member_name, check_member_names, check_segment, safe_member_path


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer/tokenizer.json", "a/b/c.bin", "数据.json",
                                  "x" * 255, "/".join(["d"] * 32)])
def test_safe_names_pass(name):
    assert check_member_name(name) == name


@pytest.mark.parametrize(("name", "why"), [
    ("/etc/cron.d/x", "absolute path"),
    ("../x", "segment '..'"),
    ("a/../../x", "segment '..'"),
    ("a/./b", "segment '.'"),
    ("a//b", "segment ''"),
    ("a/", "segment ''"),
    ("", "empty"),
    ("a\\..\\x", "backslash"),
    ("C:x", "drive letter"),
    ("a\x00b", "NUL or control character"),
    ("a\nb", "NUL or control character"),
    ("x" * 256, "a segment is longer than 255 bytes"),
    ("/".join(["d" * 200] * 6), "longer than 1024 bytes"),
    ("/".join(["d"] * 33), "deeper than 32 folders"),
    ("a/b.", "ends in a dot or space"),
    ("con.txt", "reserved device name"),
    (7, "not a string"),
    ("\udc80", "lone surrogate"),
])
def test_unsafe_names_are_refused_with_the_reason(name, why):
    with pytest.raises(UnsafeName, match="unsafe file name") as info:
        check_member_name(name)
    assert why in str(info.value)


@pytest.mark.parametrize(("names", "why"), [
    (["Model.bin", "model.bin"], "duplicate of 'Model.bin'"),
    (["caf\u00e9.txt", "cafe\u0301.txt"], "duplicate of"),   # NFC and NFD spellings of the same name
    (["a", "a/b"], "lies inside 'a'"),
])
def test_colliding_names_are_refused(names, why):
    with pytest.raises(UnsafeName, match=why):
        check_member_names(names)


def test_a_listing_is_checked_whole_and_sorted():
    assert check_member_names({"b": 1, "a/c": 2}) == ["a/c", "b"]


def test_check_segment_refuses_a_path():
    assert check_segment("3f2a") == "3f2a"
    with pytest.raises(UnsafeName, match="a single name was expected"):
        check_segment("a/b")


def test_safe_member_path_refuses_existing_symlinks_on_the_way(tmp_path):
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    assert safe_member_path(dest, "a/b.json") == dest / "a" / "b.json"
    os.symlink(outside, dest / "a")
    with pytest.raises(UnsafeName, match="is a symbolic link"):
        safe_member_path(dest, "a/b.json")
    os.symlink(outside / "f", dest / "f")  # a dangling link: writing it would create outside/f
    with pytest.raises(UnsafeName, match="is a symbolic link"):
        safe_member_path(dest, "f")
    assert not (outside / "f").exists()
