"""The compiled hasher (_fasthash) gives exactly content_hash's bytes, on every code point and on random text."""

from __future__ import annotations

import hashlib
import importlib
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from pipelines.dedup import as_hash_array, first_occurrences
from pipelines.dedup.normalize import _python_hashes, content_hash, packed_hashes

normalize_module = importlib.import_module("pipelines.dedup.normalize")  # the package re-exports a function of that name

compiled = pytest.mark.skipif(normalize_module._fasthash is None and not os.environ.get("CI"),
                              reason="the compiled hasher is not built (python -m pipelines.native)")


def native(texts: list[str]) -> list[bytes]:
    packed = normalize_module._fasthash.hash_texts(texts, normalize_module.strip_token_numbers, normalize_module._nfkc)
    return [packed[i:i + 32] for i in range(0, len(packed), 32)]


def test_ci_runs_the_compiled_hasher():
    """CI builds it (scripts/bootstrap.sh), so a broken build fails here instead of silently running slow."""
    if not os.environ.get("CI"):
        pytest.skip("outside CI the pure-Python fallback is allowed")
    assert normalize_module.IMPLEMENTATION == "compiled"


@compiled
def test_every_code_point_alone_and_between_letters():
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = [chr(c) for c in points] + [f"a{chr(c)}b" for c in points] + [f" {chr(c)}{chr(c)} " for c in points]
    got = native(texts)
    want = _python_hashes(texts)
    mismatched = [repr(t) for t, g, w in zip(texts, got, want) if g != w]
    assert not mismatched, f"{len(mismatched)} texts differ, e.g. {mismatched[:5]}"


EDGE_CASES = [
    "", " ", "   ", "\t\n", "a", " a", "a ", "a  b", "a \t b", "a\x1cb\x1fc", "a\x7fb", "a\x00b",
    "[PHONE_1]", "[PHONE_]", "[PHONE_12", "[PHONE_1]]", "[[PHONE_1]", "[PHONE_[PHONE_2]]", "[EMAIL_007] [ID_1][CARD_2]",
    "[ADDR_9]x", "[NOTATOKEN_1]", "[phone_1]", "x[ID_1", "[ID_1 ]", " [ID_3] ",
    "ＡＢＣ", "［PHONE_２］", "［PHONE_２］ é", "e\u0301", "a\u00a0b", "a\u3000\u2003b", "\u0085x\u2028", "合同\u3000已终止 [PHONE_3]",
    "emoji 🙂  end", "\U0010FFFF", "a" * 16 + "  b", "a" * 15 + "  b", "a" * 17 + "\t", "b" * 31 + " ", " " + "c" * 40,
    "x" * 100 + "[" + "y" * 100, "ﬁle  ﬂow", "a \tb", "a\t b", "x \x01 y", "\x01 x \x01", "p" * 20 + " \t " + "q" * 20,
    " " * 40 + "z" + "\n" * 40, "[ID_1]" * 10 + "  " + "[CARD_22]", "é  [PHONE_1]\t",
]


@compiled
def test_edge_cases():
    assert native(EDGE_CASES) == [content_hash(t) for t in EDGE_CASES]
    assert native(["  ＡＢＣ\tdef "]) == [hashlib.sha256(b"ABC def").digest()]


@compiled
@pytest.mark.parametrize("alphabet", [
    "ab [_]PHONEMAIL0123\t\n  ",
    "abc \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u3000\u2009[]_ID07",
    "合同已终止é\u0301ｆ\u3000\xa0 [PHONE_1]\U0001F642ﬁ",
])
def test_random_texts(alphabet):
    rng = random.Random(alphabet)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(5000)]
    assert native(texts) == [content_hash(t) for t in texts]


@compiled
@pytest.mark.parametrize("seed", [1, 2])
def test_random_texts_over_the_whole_bmp(seed):
    """Characters the NFKC table folds one at a time, next to ones it does not (combining marks, Hangul
    jamo, composed letters, astral characters), in every order."""
    rng = random.Random(seed)
    pool = [chr(c) for c in rng.sample(range(0x80, 0x10000), 3000) if not 0xD800 <= c <= 0xDFFF]
    pool += list("ab [PHONE_1] \t\u3000ＡＢ１［］ﬁ㎏é\u0301\u0323ẛ가\u1100\u1161\u11a8\u0b47\u0b3e") + ["\U0001F642"]
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    got, want = native(texts), [content_hash(t) for t in texts]
    mismatched = [repr(t) for t, g, w in zip(texts, got, want) if g != w]
    assert not mismatched, f"{len(mismatched)} texts differ, e.g. {mismatched[:3]}"


@compiled
def test_bad_input_is_refused_like_python():
    with pytest.raises(TypeError, match="item 1 is bytes, not str"):
        native(["ok", b"bytes"])
    with pytest.raises(UnicodeEncodeError):
        native(["lone \ud800 surrogate"])
    with pytest.raises(UnicodeEncodeError):
        content_hash("lone \ud800 surrogate")


def test_packed_hashes_view_and_grouping():
    texts = ["b", "a", "b ", "c", " a", "d"]
    packed = packed_hashes(texts)
    assert len(packed) == 32 * len(texts)
    array = as_hash_array(packed)
    assert array.dtype == np.dtype("S32") and len(array) == len(texts)
    assert first_occurrences(array).tolist() == [0, 1, 0, 3, 1, 5]


@pytest.mark.parametrize("implementation", ["compiled", "numpy"])
def test_first_occurrences_is_exact_when_64_bit_prefixes_collide(implementation, monkeypatch):
    """Different digests sharing their first 8 bytes are still told apart, in C and in numpy."""
    if implementation == "numpy":
        monkeypatch.setattr(normalize_module, "_fasthash", None)
    elif normalize_module._fasthash is None:
        pytest.skip("compiled hasher not built")
    a = b"\x01" * 8 + b"\x02" * 24
    b = b"\x01" * 8 + b"\x03" * 24
    array = as_hash_array(a + b + a + b + b)
    assert first_occurrences(array).tolist() == [0, 1, 0, 1, 1]
    rng = random.Random(5)
    digests = [rng.randbytes(32) for _ in range(500)]
    picks = [rng.choice(digests) for _ in range(5000)]
    first: dict[bytes, int] = {}
    assert first_occurrences(as_hash_array(b"".join(picks))).tolist() == [first.setdefault(p, i) for i, p in enumerate(picks)]


def test_native_check_reports_the_implementations():
    from pipelines import native

    found = native.implementations()
    out = subprocess.run([sys.executable, "-m", "pipelines.native", "--check"], capture_output=True, text=True)
    assert out.stdout.splitlines() == [f"{label}: {impl}" for label, impl in found.items()]
    assert found["dedup hasher"] == normalize_module.IMPLEMENTATION
    assert out.returncode == (0 if set(found.values()) == {"compiled"} else 1)


def test_native_build_is_a_no_op_when_up_to_date_and_reports_a_compiler_error(tmp_path, monkeypatch):
    from pipelines import native

    ext = native.EXTENSIONS[0]
    if not ext.target.exists():
        pytest.skip("not built here")
    before = ext.target.stat().st_mtime_ns
    assert native.build(ext, quiet=True) == ext.target
    assert ext.target.stat().st_mtime_ns == before  # up to date: not rebuilt
    broken = native.Extension("broken")
    monkeypatch.setattr(native.Extension, "source", property(lambda self: tmp_path / "broken.c"))
    monkeypatch.setattr(native.Extension, "target", property(lambda self: tmp_path / "broken.so"))
    (tmp_path / "broken.so").write_bytes(b"a build of other sources")
    (tmp_path / "broken.c").write_text("this is not C;\n")
    with pytest.raises(RuntimeError, match=r"compiling broken.c failed \(the Python fallback is used\)"):
        native.build(broken, quiet=True)
    # The stale build is gone (it must not be imported against other sources), and nothing half-written stays.
    assert not (tmp_path / "broken.so").exists() and not (tmp_path / "broken.so.tmp").exists()
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.raises(RuntimeError, match="compiling broken.c failed"):
        native.build(broken, quiet=True)
