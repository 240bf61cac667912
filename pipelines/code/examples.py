"""Training examples from a scrubbed file: fill-in-the-middle or next-line, as ``question``/``answer``.

The causal-LM trainer learns ``answer`` given ``question`` (loss on the answer only), so a code example
fits the existing training path unchanged: one example per file, chosen and cut deterministically from
the file's content (a re-run builds the same example), short enough to fit the training ``max_length``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<fim_prefix>", "<fim_suffix>", "<fim_middle>"


@dataclass(frozen=True)
class ExampleConfig:
    """How examples are cut.

    Attributes:
        fim_rate: share of files whose example is fill-in-the-middle (the rest: next line).
        context_lines: lines of context before (and, for FIM, after) the target.
        max_context_chars: the context is cut to its last (first, for a suffix) this many characters.
    """

    fim_rate: float = 0.5
    context_lines: int = 8
    max_context_chars: int = 400

    def __post_init__(self) -> None:
        if not 0 <= self.fim_rate <= 1 or self.context_lines < 1 or self.max_context_chars < 40:
            raise ValueError("ExampleConfig: fim_rate in [0, 1], context_lines >= 1, max_context_chars >= 40")


def _unit(seed: bytes, salt: str) -> float:
    return int.from_bytes(hashlib.sha256(salt.encode() + seed).digest()[:8], "big") / 2 ** 64


def build_example(text: str, *, config: ExampleConfig = ExampleConfig()) -> tuple[str, str] | None:
    """``(question, answer)`` for one file, or None when it has no non-blank line after its first.

    Next line: question = up to ``context_lines`` lines before a target line, answer = the line.
    FIM: question = ``<fim_prefix>before<fim_suffix>after<fim_middle>``, answer = the target line.
    """
    lines = text.split("\n")
    targets = [i for i, line in enumerate(lines) if i > 0 and line.strip()]
    if not targets:
        return None
    seed = hashlib.sha256(text.encode()).digest()
    target = targets[int(_unit(seed, "line") * len(targets))]
    before = "\n".join(lines[max(0, target - config.context_lines):target]) + "\n"
    before = before[-config.max_context_chars:]
    answer = lines[target]
    if _unit(seed, "fim") < config.fim_rate:
        after = "\n" + "\n".join(lines[target + 1:target + 1 + config.context_lines])
        after = after[:config.max_context_chars]
        return f"{FIM_PREFIX}{before}{FIM_SUFFIX}{after}{FIM_MIDDLE}", answer
    return before, answer
