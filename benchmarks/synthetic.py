"""Fast, deterministic synthetic landing records for benchmarks (ingest, dedup, validation).

Each record carries about ``text_bytes`` bytes of English or Chinese filler text. A configurable
share of records repeats the text of an earlier record of the same domain (exact duplicates,
within and across weeks) or repeats it with full-width characters and extra whitespace
(duplicates after NFKC and whitespace folding). Everything else is unique: every original text
ends with a marker derived from its record number.

Texts are slices of two pre-generated blocks, addressed by a hash of the record number, so a
duplicate is regenerated from the number of the record it copies instead of being kept in
memory: one million records take a few seconds and constant memory.

Usage::

    python benchmarks/synthetic.py --records 1000000 --out /tmp/landing-1m
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

DOMAINS = ("legal", "medical", "finance", "customer_service", "product_reviews")
LABELS = ("alpha", "beta", "gamma", "delta")

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MARKER_BYTES = 16  # room kept for " #<hex record number>"
_FULL_WIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "#0123456789abcdef"})

_EN_WORDS = (
    "the a an of to in for on with at by from about as into after over between under during "
    "without within along across behind beyond customer order payment refund account invoice "
    "contract clause agreement tenant landlord employer employee patent trademark license court "
    "judge claim policy premium insurer coverage deductible bank loan mortgage rate interest tax "
    "return filing deadline penalty patient doctor nurse clinic dose tablet symptom fever "
    "treatment therapy review product quality delivery package price service support ticket "
    "request issue error update release version model answer question feedback rating week "
    "month year day morning evening report record file batch upload download network server "
    "database table index query result value number amount total balance fee charge credit "
    "debit card transfer branch office team manager staff schedule shift leave notice letter "
    "is was were are be been has have had will would could should may might must can did does "
    "new old late early small large quick slow clear missing broken pending approved denied "
    "final partial annual monthly weekly daily urgent routine standard special general local "
    "asked reported received sent filed paid charged delivered returned signed reviewed "
    "approved rejected opened closed updated scheduled cancelled confirmed processed noted"
).split()

# Common simplified Chinese characters; a random sequence of them is enough for byte-level work.
_ZH_CHARS = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
    "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使"
    "点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明"
    "看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料"
    "象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指"
    "几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶"
    "油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议"
    "声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影"
    "算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何"
    "除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属"
    "圆包火住调满县局照参红细引听该铁价严龙飞"
)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate.

    Attributes:
        records: Number of records.
        duplicate_rate: Share of records repeating an earlier record's text exactly.
        near_duplicate_rate: Share repeating an earlier text with full-width characters and
            extra whitespace (identical after NFKC and whitespace folding).
        zh_fraction: Share of Chinese texts; the rest are English.
        text_bytes: Approximate UTF-8 size of each text.
        records_per_file: Records per JSONL file.
        start_date: Arrival date of the first file; files spread over ``days`` days.
        days: Number of arrival days the files are spread over.
        seed: Seed of every random choice; the same config gives the same records.
    """

    records: int = 1_000_000
    duplicate_rate: float = 0.10
    near_duplicate_rate: float = 0.02
    zh_fraction: float = 0.3
    text_bytes: int = 500
    records_per_file: int = 20_000
    start_date: date = date(2026, 10, 4)
    days: int = 28
    seed: int = 20261004

    def __post_init__(self) -> None:
        if self.records < 0:
            raise ValueError(f"records must be >= 0, got {self.records}")
        for name in ("duplicate_rate", "near_duplicate_rate", "zh_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.duplicate_rate + self.near_duplicate_rate > 1.0:
            raise ValueError("duplicate_rate + near_duplicate_rate must not exceed 1")
        if self.text_bytes < 3 * _MARKER_BYTES:
            raise ValueError(f"text_bytes must be >= {3 * _MARKER_BYTES}, got {self.text_bytes}")
        if self.records_per_file < 1 or self.days < 1:
            raise ValueError("records_per_file and days must be >= 1")

    @property
    def files(self) -> int:
        """Number of files the records are split into."""
        return max(1, -(-self.records // self.records_per_file))


@dataclass(frozen=True)
class SyntheticSummary:
    """What ``write_landing`` wrote.

    Attributes:
        out_dir: Folder holding the ``landing/`` keys.
        keys: Landing keys written, in order.
        records: Records written.
        exact_duplicates: Records repeating an earlier text exactly.
        near_duplicates: Records repeating an earlier text up to normalization.
        bytes_written: Total size of the files.
    """

    out_dir: Path
    keys: tuple[str, ...]
    records: int
    exact_duplicates: int
    near_duplicates: int
    bytes_written: int


class _Texts:
    """Deterministic text of record number ``n``, recomputable at any time."""

    def __init__(self, config: SyntheticConfig) -> None:
        rng = random.Random(f"{config.seed}/blocks")
        self.en_block = " ".join(rng.choices(_EN_WORDS, k=250_000))
        self.zh_block = "".join(rng.choices(_ZH_CHARS, k=500_000))
        self.en_chars = config.text_bytes - _MARKER_BYTES
        self.zh_chars = (config.text_bytes - _MARKER_BYTES) // 3
        self.zh_threshold = int(config.zh_fraction * 1_000_000)
        self.salt = random.Random(f"{config.seed}/salt").getrandbits(64)

    def text(self, n: int) -> tuple[str, str, str]:
        """Return ``(text, language, label)`` of original record ``n``."""
        h = ((n + self.salt) * _GOLDEN) & _MASK64
        h ^= h >> 29
        if (h >> 20) % 1_000_000 < self.zh_threshold:
            block, size, language = self.zh_block, self.zh_chars, "zh"
        else:
            block, size, language = self.en_block, self.en_chars, "en"
        offset = h % (len(block) - size)
        return f"{block[offset:offset + size]} #{n:x}", language, LABELS[(h >> 8) & 3]


def _near(text: str) -> str:
    # Full-width marker, doubled space before it and a trailing newline: same after NFKC+folding.
    body, _, marker = text.rpartition(" ")
    return f"{body}  {marker.translate(_FULL_WIDTH)}\n"


def _file_slot(config: SyntheticConfig, file_index: int) -> tuple[str, date]:
    domain = DOMAINS[file_index % len(DOMAINS)]
    arrival = config.start_date + timedelta(days=file_index * config.days // config.files)
    return domain, arrival


class _Plan:
    """Which records copy which: a pure function of the record number, so chains resolve."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.per_file = config.records_per_file
        self.copy_below = int((config.duplicate_rate + config.near_duplicate_rate) * 2**32)
        self.exact_below = int(config.duplicate_rate * 2**32)
        self.salt = random.Random(f"{config.seed}/plan").getrandbits(64)

    def source(self, n: int) -> tuple[str, int]:
        """Return ``(kind, source)``: ``("new", n)`` or the earlier record ``n`` copies."""
        h = ((n ^ self.salt) * _GOLDEN) & _MASK64
        h ^= h >> 31
        draw = h & 0xFFFFFFFF
        if draw >= self.copy_below:
            return "new", n
        # Copy a record of the same domain: this file or an earlier file of the domain, so
        # duplicates occur both within a week and across weeks.
        file_index = n // self.per_file
        back = (h >> 32) % (file_index // len(DOMAINS) + 1)
        base = (file_index - back * len(DOMAINS)) * self.per_file
        span = (n - base) if back == 0 else self.per_file
        if span == 0:
            return "new", n
        source = base + ((h >> 40) * 2654435761) % span
        return ("duplicate" if draw < self.exact_below else "near"), source


def _generate(config: SyntheticConfig) -> Iterator[tuple[int, dict[str, str], str]]:
    """Yield ``(file index, record, kind)``, kind being ``new``, ``duplicate`` or ``near``."""
    texts = _Texts(config)
    plan = _Plan(config)

    def content(n: int) -> tuple[str, str, str]:
        kind, source = plan.source(n)
        if kind == "new":
            return texts.text(n)
        if kind == "duplicate":
            return content(source)
        while kind != "new":  # a near copy is made from the original text
            kind, source = plan.source(source)
        text, language, label = texts.text(source)
        return _near(text), language, label

    per_file = config.records_per_file
    for file_index in range(config.files):
        _, arrival = _file_slot(config, file_index)
        day = f"{arrival.isoformat()}T"
        for n in range(file_index * per_file, min((file_index + 1) * per_file, config.records)):
            text, language, label = content(n)
            seconds = (n * 7919) % 86_400
            hh, mm, ss = seconds // 3600, seconds // 60 % 60, seconds % 60
            record = {
                "id": f"syn-{n:09d}",
                "text": text,
                "label": label,
                "language": language,
                "created_at": f"{day}{hh:02d}:{mm:02d}:{ss:02d}Z",
            }
            yield file_index, record, plan.source(n)[0]


def iter_records(config: SyntheticConfig) -> Iterator[dict[str, str]]:
    """Yield the synthetic records, in file order.

    Args:
        config: What to generate.

    Yields:
        Landing records: ``id``, ``text``, ``label``, ``language``, ``created_at``.
    """
    for _, record, _ in _generate(config):
        yield record


def write_landing(*, config: SyntheticConfig, out_dir: Path) -> SyntheticSummary:
    """Write the records as JSONL files under ``out_dir/landing/<domain>/<date>/part-NNNNN.jsonl``.

    Args:
        config: What to generate.
        out_dir: Destination folder; existing files with the same keys are overwritten.

    Returns:
        Keys written and counts.
    """
    out_dir = Path(out_dir)
    keys: list[str] = []
    counts = {"new": 0, "duplicate": 0, "near": 0}
    written = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    current, lines = -1, []

    def flush() -> None:
        nonlocal written
        if current < 0:
            return
        domain, arrival = _file_slot(config, current)
        key = f"landing/{domain}/{arrival.isoformat()}/part-{current:05d}.jsonl"
        path = out_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = "".join(lines).encode("utf-8")
        path.write_bytes(payload)
        written += len(payload)
        keys.append(key)

    for file_index, record, kind in _generate(config):
        if file_index != current:
            flush()
            current, lines = file_index, []
        lines.append(dumps(record) + "\n")
        counts[kind] += 1
    flush()
    return SyntheticSummary(
        out_dir=out_dir,
        keys=tuple(keys),
        records=sum(counts.values()),
        exact_duplicates=counts["duplicate"],
        near_duplicates=counts["near"],
        bytes_written=written,
    )


def main(argv: list[str] | None = None) -> int:
    """Generate synthetic landing files and print what was written and how fast."""
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(
        description="Write N deterministic synthetic records (~500-byte en/zh texts with planted "
        "duplicates) as JSONL files under OUT/landing/<domain>/<YYYY-MM-DD>/part-NNNNN.jsonl.",
    )
    parser.add_argument("--out", type=Path, required=True, help="destination folder")
    options = (  # (flag, config field, type, help)
        ("--records", "records", int, "number of records"),
        ("--duplicate-rate", "duplicate_rate", float, "share of exact duplicates"),
        ("--near-duplicate-rate", "near_duplicate_rate", float,
         "share of duplicates after NFKC and whitespace folding"),
        ("--zh-fraction", "zh_fraction", float, "share of Chinese texts"),
        ("--text-bytes", "text_bytes", int, "approximate UTF-8 bytes per text"),
        ("--records-per-file", "records_per_file", int, "records per JSONL file"),
        ("--days", "days", int, "arrival days the files spread over, from 2026-10-04"),
        ("--seed", "seed", int, "seed of every random choice"),
    )
    for flag, name, kind, text in options:
        parser.add_argument(
            flag, dest=name, type=kind, default=getattr(defaults, name),
            help=f"{text} (default: %(default)s)",
        )
    args = parser.parse_args(argv)
    try:
        config = SyntheticConfig(**{name: getattr(args, name) for _, name, _, _ in options})
    except ValueError as exc:
        parser.error(str(exc))
    started = time.perf_counter()
    summary = write_landing(config=config, out_dir=args.out)
    seconds = time.perf_counter() - started
    print(
        f"wrote {summary.records} records ({summary.exact_duplicates} exact duplicates, "
        f"{summary.near_duplicates} near duplicates) in {len(summary.keys)} files, "
        f"{summary.bytes_written / 1e6:.1f} MB to {summary.out_dir}/landing in {seconds:.1f} s "
        f"({summary.records / max(seconds, 1e-9):,.0f} records/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
