"""Benchmark the sensitive-word filter against the dedup hasher, side by side in one run.

Builds a synthetic lexicon of ``--words`` entries (default 120,000: 60% random CJK words of 2-4
characters from the whole CJK Unified Ideographs block, 40% random Latin words of 4-12 letters,
five categories; seeded), times ``Lexicon.from_entries`` (folding) and the automaton build, and
reports the automaton's size (pyahocorasick's ``get_stats``), the process's RSS growth, and the
pickled size and load time (what a worker pays to receive a built lexicon instead of building it).

Then generates ``--records`` curated-like records (default 200,000) of ~500 characters: a third
Chinese (with full-width punctuation, as real Chinese text has, so it is not NFKC), a third
English, a third mixed; ``--hit-rate`` of them (default 3%) get one or two lexicon words, some
upper-cased or full-width. Over the same texts, each round times:

* dedup: ``pipelines.dedup.normalize.packed_hashes`` (NFKC + whitespace folding + SHA-256);
* ``filter_records`` with every domain on ``flag``, on ``drop`` and on ``mask``;
* for reference, ``filter_records`` (``flag``) with the project's own lexicon (bundled list plus
  ``config/sensitive_words.txt``), which is what production runs today;

chunk by chunk (``--chunk`` records): every stage runs on a chunk, in rotating order, before the
next chunk, so a change of load on a shared machine hits all stages alike. Prints the median
records/s of each over ``--repeat`` rounds and the median of the per-round filter/dedup ratios (the
target is filter >= dedup). One process, pinned to ``--cores`` cores; read the ratio rather than
the absolute numbers.

Usage (from the project root):
    .venv/bin/python benchmarks/sensitive_filter.py                       # 200k records, 120k words
    .venv/bin/python benchmarks/sensitive_filter.py --records 20000 --repeat 1   # smoke test
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.synthetic import _EN_WORDS, _ZH_CHARS, DOMAINS  # noqa: E402
from pipelines.dedup.normalize import packed_hashes  # noqa: E402
from pipelines.sensitive import POLICIES, Lexicon, SensitiveConfig, filter_records, fold, load_lexicon  # noqa: E402

CATEGORIES = ("fraud", "gambling", "drugs", "weapons", "general")
LATIN = "abcdefghijklmnopqrstuvwxyz"
_FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in LATIN + LATIN.upper()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def synthetic_words(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` distinct ``(word, category)``: 60% CJK (2-4 chars), 40% Latin (4-12 letters)."""
    rng = random.Random(f"{seed}/words")
    words: dict[str, str] = {}
    while len(words) < count:
        if rng.random() < 0.6:
            word = "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(2, 4)))
        else:
            word = "".join(rng.choices(LATIN, k=rng.randint(4, 12)))
        words.setdefault(word, rng.choice(CATEGORIES))
    return list(words.items())


def zh_block(rng: random.Random, size: int) -> str:
    parts, n = [], 0
    while n < size:
        clause = "".join(rng.choices(_ZH_CHARS, k=rng.randint(6, 20))) + rng.choice("，，，。：；（）！？、")
        parts.append(clause)
        n += len(clause)
    return "".join(parts)


def en_block(rng: random.Random, size: int) -> str:
    parts, n = [], 0
    while n < size:
        sentence = " ".join(rng.choices(_EN_WORDS, k=rng.randint(5, 14))).capitalize() + ". "
        parts.append(sentence)
        n += len(sentence)
    return "".join(parts)


def variant(word: str, rng: random.Random) -> str:
    """The word as written in a text: as is, upper-cased or full-width (Latin words)."""
    if not word.isascii():
        return word
    draw = rng.random()
    if draw < 1 / 3:
        return word.upper()
    if draw < 2 / 3:
        return "".join(_FULL_WIDTH[c] for c in word)
    return word


def synthetic_rows(count: int, *, words: list[tuple[str, str]], hit_rate: float, chars: int,
                   seed: int) -> tuple[list[dict], int]:
    """``count`` records (1/3 zh, 1/3 en, 1/3 mixed) and how many were given lexicon words."""
    rng = random.Random(f"{seed}/records")
    zh, en = zh_block(rng, 1_000_000), en_block(rng, 2_000_000)
    rows, seeded = [], 0
    for i in range(count):
        kind = i % 3
        if kind == 0:
            at = rng.randrange(len(zh) - chars)
            text = zh[at:at + chars]
        elif kind == 1:
            at = rng.randrange(len(en) - chars)
            text = en[at:at + chars]
        else:
            a, b = rng.randrange(len(zh) - chars // 2), rng.randrange(len(en) - chars // 2)
            text = f"{zh[a:a + chars // 2]} {en[b:b + chars - chars // 2 - 1]}"
        if rng.random() < hit_rate:
            seeded += 1
            for _ in range(rng.randint(1, 2)):
                at = rng.randrange(len(text))
                text = f"{text[:at]} {variant(rng.choice(words)[0], rng)} {text[at:]}"
        domain = DOMAINS[i % len(DOMAINS)]
        rows.append({"id": f"r{i}", "domain": domain, "text": text, "source_uri": f"landing/{domain}/bench.jsonl#L{i}"})
    return rows, seeded


def timed(fn) -> tuple[float, object]:
    gc.collect()
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time the sensitive-word filter (pipelines.sensitive.filter_records, flag/drop/mask) against "
        "the dedup hasher (pipelines.dedup.normalize.packed_hashes) over the same synthetic ~500-character zh/en "
        "records with a synthetic 120k-entry lexicon, side by side in one process; print records/s, the "
        "filter/dedup ratio (target >= 1), the automaton build time and its memory.",
        epilog="Example: .venv/bin/python benchmarks/sensitive_filter.py --records 20000 --repeat 1 (smoke test).",
    )
    parser.add_argument("--records", type=int, default=200_000, help="synthetic records (default: %(default)s)")
    parser.add_argument("--words", type=int, default=120_000, help="synthetic lexicon entries (default: %(default)s)")
    parser.add_argument("--chars", type=int, default=500, help="characters per record (default: %(default)s)")
    parser.add_argument("--hit-rate", type=float, default=0.03,
                        help="share of records given one or two lexicon words (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=10_000,
                        help="records per chunk: every stage runs on a chunk before the next chunk, so load "
                        "changes on a shared machine hit all stages alike (default: %(default)s)")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores to pin to, 0 = no pinning (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=20261004, help="seed of the lexicon and the records (default: %(default)s)")
    args = parser.parse_args(argv)
    if min(args.records, args.repeat, args.words, args.chunk) < 1 or args.chars < 20:
        parser.error("--records, --repeat, --words and --chunk must be >= 1, --chars >= 20")
    if not 0.0 <= args.hit_rate <= 1.0:
        parser.error("--hit-rate must be within [0, 1]")
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:args.cores]))

    table_s, _ = timed(lambda: fold("ＡＢＣ"))
    seconds, project = timed(load_lexicon)
    seconds_build, _ = timed(lambda: project.automaton)
    print(f"folding table (built once per process, on the first non-NFKC text): {table_s:.3f} s")
    print(f"project lexicon: {len(project)} entries ({', '.join(project.sources)}), load {seconds * 1000:.1f} ms, "
          f"automaton {seconds_build * 1000:.1f} ms, digest {project.digest[:16]}")

    words = synthetic_words(args.words, args.seed)
    cjk = sum(1 for w, _ in words if not w.isascii())
    rss0 = rss_bytes()
    fold_s, lexicon = timed(lambda: Lexicon.from_entries(words, sources=("synthetic",)))
    rss1 = rss_bytes()
    build_s, automaton = timed(lambda: lexicon.automaton)
    rss2 = rss_bytes()
    size = automaton.get_stats()["total_size"]
    blob = pickle.dumps(lexicon, protocol=pickle.HIGHEST_PROTOCOL)
    load_s, _ = timed(lambda: pickle.loads(blob))
    print(f"synthetic lexicon: {len(lexicon):,} entries ({cjk:,} CJK, {len(lexicon) - cjk:,} Latin), "
          f"{len(lexicon.categories)} categories, digest {lexicon.digest[:16]}")
    print(f"  Lexicon.from_entries (fold, check, sort): {fold_s:.2f} s, RSS +{(rss1 - rss0) / 2**20:.0f} MiB")
    print(f"  automaton build:                          {build_s:.2f} s, RSS +{(rss2 - rss1) / 2**20:.0f} MiB, "
          f"pyahocorasick total_size {size / 2**20:.1f} MiB")
    print(f"  pickled lexicon with automaton:           {len(blob) / 2**20:.1f} MiB, unpickle {load_s:.2f} s")

    gen_s, (rows, seeded) = timed(lambda: synthetic_rows(args.records, words=words, hit_rate=args.hit_rate,
                                                         chars=args.chars, seed=args.seed))
    texts = [r["text"] for r in rows]
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"records: {len(rows):,} ({mean_chars:.0f} chars on average; 1/3 zh, 1/3 en, 1/3 mixed), "
          f"{seeded:,} seeded with lexicon words ({seeded / len(rows):.1%}); generated in {gen_s:.1f} s")

    # (lexicon, policy) per filter stage; "project:flag" is the project's own (small) lexicon.
    filters = {f"filter:{p}": (lexicon, SensitiveConfig(default=p)) for p in POLICIES}
    filters["project:flag"] = (project, SensitiveConfig(default="flag"))
    stages = ["dedup", *filters]
    chunks = [(texts[lo:lo + args.chunk], rows[lo:lo + args.chunk]) for lo in range(0, len(rows), args.chunk)]
    times: dict[str, list[float]] = {s: [] for s in stages}
    matched = 0
    categories: dict[str, int] = {}
    for round_ in range(args.repeat):
        spent = dict.fromkeys(stages, 0.0)
        gc.collect()
        for i, (chunk_texts, chunk_rows) in enumerate(chunks):
            shift = (round_ + i) % len(stages)  # rotate: no stage always runs first
            for stage in stages[shift:] + stages[:shift]:
                if stage == "dedup":
                    started = time.perf_counter()
                    packed_hashes(chunk_texts)
                    spent[stage] += time.perf_counter() - started
                else:
                    started = time.perf_counter()
                    result = filter_records(chunk_rows, lexicon=filters[stage][0], policy=filters[stage][1])
                    spent[stage] += time.perf_counter() - started
                    if round_ == 0 and stage == "filter:drop":
                        matched += result.counts["matched"]
                        for category, n in result.categories.items():
                            categories[category] = categories.get(category, 0) + n
        for stage in stages:
            times[stage].append(spent[stage])
        print(f"  round {round_ + 1}: " + ", ".join(f"{s} {len(rows) / spent[s]:,.0f}/s" for s in stages), flush=True)
    print(f"matched records: {matched:,} ({matched / len(rows):.1%}); matches per category: {dict(sorted(categories.items()))}")

    dedup = len(rows) / statistics.median(times["dedup"])
    print(f"\n{'stage':<46} {'median records/s':>17} {'vs dedup':>9}")
    print(f"{'dedup hashing (packed_hashes)':<46} {dedup:>17,.0f} {1:>9.2f}")
    ok = True
    for stage in filters:
        rate = len(rows) / statistics.median(times[stage])
        # The ratio is the median of per-round ratios: both sides of a round ran interleaved.
        ratio = statistics.median(d / f for d, f in zip(times["dedup"], times[stage]))
        if stage.startswith("filter:"):
            ok &= ratio >= 1
            label = f"filter_records, {len(lexicon) // 1000}k words, {stage[7:]}"
        else:
            label = f"filter_records, project lexicon ({len(project)}), flag"
        print(f"{label:<46} {rate:>17,.0f} {ratio:>9.2f}")
    print(f"\ntarget filter ({len(lexicon):,} words) >= dedup records/s: {'met' if ok else 'NOT met'} "
          f"({args.repeat} rounds, {args.cores or 'all'} core(s), Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
