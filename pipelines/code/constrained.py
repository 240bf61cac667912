"""Grammar-constrained code completion (xgrammar): JSON by its grammar; Python by a grammar for a subset plus
``ast.parse`` with bounded retries, so a completion either parses or says it could not finish.

Python is not context free (indentation), so the grammar is built per request for the block the prompt ends
in: the completion is a run of *simple statements* (assignment, augmented assignment, expression, return,
pass, raise, assert, import...) at that block's indentation, each a lexically well-formed line (balanced
brackets, closed strings); a prompt that ends mid-line first finishes its line with an expression. The grammar makes a
parse likely; ``ast.parse(prompt + completion)`` decides: the longest completion ending at a line boundary
that parses is kept. When none does, the request is retried with seeded sampling, ``max_retries`` times,
then answered ``finished: false``. Greedy decoding with the same loop and no grammar is the unconstrained
baseline of the evaluation and the benchmark.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

GRAMMARS = ("python", "json", "none")
# transformers 5.2x names the KV cache argument ``cache`` (``past_key_values`` is deprecated).
_CACHE_ARG = "cache"

_EXPR = r'''
exprlist ::= expr (", " expr)*
expr ::= unary (" " binop " " unary)* | "lambda" (" " name ("," " "? name)*)? ": " unary
unary ::= ("not " | "-" | "~")? atom trailer*
atom ::= name | number | string | "(" (exprlist ","?)? ")" | "[" (exprlist ","?)? "]" | "{" (items ","?)? "}"
items ::= item (", " item)*
item ::= expr (": " expr)?
trailer ::= "." name | "(" args? ")" | "[" expr (":" expr?)? "]"
args ::= arg (", " arg)*
arg ::= (name "=")? expr | "*" expr | "**" expr
binop ::= "+" | "-" | "*" | "/" | "//" | "%" | "**" | "==" | "!=" | "<" | ">" | "<=" | ">=" | "and" | "or" | "in" | "not in" | "is" | "is not" | "if" | "else" | "&" | "|" | "^" | "<<" | ">>"
name ::= [a-zA-Z_] [a-zA-Z0-9_]*
dotted ::= name ("." name)*
number ::= [0-9]+ ("." [0-9]+)? | "0x" [0-9a-fA-F]+
string ::= "\"" [^"\\\n]* "\"" | "'" [^'\\\n]* "'" | "f\"" [^"\\\n{}]* "\""
'''


def python_subset_ebnf(*, indent: str, mid_line: bool) -> str:
    """The EBNF (xgrammar's GBNF dialect) of a completion: simple statements at ``indent``, one per line.

    Args:
        indent: the indentation every new line of the completion has (the prompt's block).
        mid_line: the prompt ends inside a line: the completion first finishes it (any characters, then a newline).
    """
    first = 'rest "\\n" ' if mid_line else ""
    lead = f"{json.dumps(indent)} " if indent else ""
    return (f"root ::= {first}line+\n"
            'rest ::= (exprlist (" " assignop " " exprlist)?)?\n'
            f'line ::= {lead}stmt "\\n"\n'
            'stmt ::= "pass" | "break" | "continue" | "return" (" " exprlist)? | "raise" (" " expr)? '
            '| "assert " expr | "import " dotted (" as " name)? | "from " dotted " import " name ("," " " name)* '
            '| "del " exprlist | "global " name | exprlist (" " assignop " " exprlist)?\n'
            'assignop ::= "=" | "+=" | "-=" | "*=" | "/=" | "//=" | "%=" | "|=" | "&="\n') + _EXPR


def block_indent(prompt: str, *, unit: str = "    ") -> tuple[str, bool]:
    """``(indentation of the next statement, whether the prompt ends mid-line)``.

    After a line ending in ``:`` the block is one ``unit`` deeper than that line; otherwise it is the last
    non-blank line's indentation.
    """
    mid_line = bool(prompt) and not prompt.endswith("\n")
    lines = [line for line in prompt.split("\n") if line.strip()]
    if not lines:
        return "", mid_line
    last = lines[-1]
    indent = last[: len(last) - len(last.lstrip())]
    if last.rstrip().endswith(":") and not mid_line:
        indent += unit
    return indent, mid_line


def longest_parsing_prefix(prompt: str, completion: str) -> str | None:
    """The longest prefix of ``completion`` ending at a line boundary (or the whole) with which ``prompt`` parses.

    Only non-blank prefixes count: an empty completion is not an answer.
    """
    cuts = [len(completion)] + [i + 1 for i in range(len(completion) - 1, -1, -1) if completion[i] == "\n"]
    for cut in dict.fromkeys(cuts):
        candidate = completion[:cut]
        if not candidate.strip():
            continue
        try:
            ast.parse(prompt + candidate)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            continue
        return candidate
    return None


def json_prefix(completion: str) -> str | None:
    """``completion`` when it is one JSON value (surrounding whitespace allowed), else None."""
    try:
        json.loads(completion)
    except ValueError:
        return None
    return completion


@dataclass(frozen=True)
class CodeCompletion:
    """One answer of ``complete``.

    ``finished``: the text parses (Python: with the prompt; JSON: as a value). When False, ``text`` is empty
    and ``detail`` says why (the token limit reached ``attempts`` times without a parse).
    """

    text: str
    finished: bool
    grammar: str
    tokens: int
    attempts: int
    seconds: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "finished": self.finished, "grammar": self.grammar, "tokens": self.tokens,
                "attempts": self.attempts, "detail": self.detail}


class GrammarCache:
    """xgrammar's tokenizer info and compiled grammars for one tokenizer (compiling is the costly part)."""

    def __init__(self, tokenizer: Any, *, vocab_size: int, stop_ids: Sequence[int]) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
        self.compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._json = None
        self._python = lru_cache(maxsize=64)(self._compile_python)

    def _compile_python(self, indent: str, mid_line: bool) -> Any:
        return self.compiler.compile_grammar(python_subset_ebnf(indent=indent, mid_line=mid_line))

    def compiled(self, grammar: str, prompt: str) -> Any:
        if grammar == "json":
            if self._json is None:
                self._json = self.compiler.compile_builtin_json_grammar()
            return self._json
        if grammar == "python":
            return self._python(*block_indent(prompt))
        return None


def decode(model: Any, prompt_ids: Sequence[int], *, max_new_tokens: int, stop_ids: Sequence[int],
           compiled: Any = None, cache: GrammarCache | None = None, temperature: float = 0.0,
           seed: int = 0) -> list[int]:
    """Token by token (KV cache), greedy or seeded sampling, masked by ``compiled`` when given."""
    import torch

    matcher = bitmask = None
    if compiled is not None:
        matcher = cache.xgr.GrammarMatcher(compiled)
        bitmask = cache.xgr.allocate_token_bitmask(1, cache.vocab_size)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids)], device=device)
    out: list[int] = []
    past = None
    stops = set(stop_ids)
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            result = model(input_ids=ids, use_cache=True, **({} if past is None else {_CACHE_ARG: past}))
            past = getattr(result, "cache", None) or result.past_key_values
            logits = result.logits[:, -1, :].float().cpu()
            if logits.shape[-1] > (cache.vocab_size if cache else logits.shape[-1]):
                logits = logits[:, :cache.vocab_size]
            if matcher is not None:
                matcher.fill_next_token_bitmask(bitmask)
                cache.xgr.apply_token_bitmask_inplace(logits, bitmask)
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator)[0, 0])
            else:
                token = int(logits.argmax(dim=-1)[0])
            if token in stops:
                break
            if matcher is not None and not matcher.accept_token(token):
                break
            out.append(token)
            if matcher is not None and matcher.is_terminated():
                break
            ids = torch.tensor([[token]], device=device)
    return out


def complete(model: Any, tokenizer: Any, prompt: str, *, grammar: str, max_new_tokens: int, max_retries: int = 3,
             cache: GrammarCache | None = None, prompt_ids: Sequence[int] | None = None,
             stop_ids: Sequence[int] = ()) -> CodeCompletion:
    """Complete ``prompt`` under ``grammar`` (``python``, ``json`` or ``none``).

    Args:
        model / tokenizer: a causal LM and its tokenizer.
        prompt: the code before the cursor (Python) or the request (JSON).
        max_new_tokens: the token limit of one attempt.
        max_retries: attempts after the first (seeded sampling at temperature 0.8) when the answer does not parse.
        cache: compiled grammars for this tokenizer (built when None).
        prompt_ids: the model's input (default: the tokenizer's encoding of ``prompt``).
        stop_ids: end tokens.
    """
    if grammar not in GRAMMARS:
        raise ValueError(f"grammar {grammar!r}: use one of {GRAMMARS}")
    started = time.perf_counter()
    ids = list(prompt_ids) if prompt_ids is not None else tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if grammar != "none" and cache is None:
        cache = GrammarCache(tokenizer, vocab_size=model.get_output_embeddings().weight.shape[0], stop_ids=stop_ids)
    compiled = cache.compiled(grammar, prompt) if grammar != "none" else None
    tokens = 0
    attempts = 1 + (max_retries if grammar != "none" else 0)
    for attempt in range(attempts):
        out = decode(model, ids, max_new_tokens=max_new_tokens, stop_ids=stop_ids, compiled=compiled, cache=cache,
                     temperature=0.0 if attempt == 0 else 0.8, seed=attempt)
        tokens += len(out)
        text = tokenizer.decode(out, skip_special_tokens=True)
        if grammar == "none":
            return CodeCompletion(text, parses(prompt, text, "python"), grammar, tokens, 1,
                                  round(time.perf_counter() - started, 4))
        kept = longest_parsing_prefix(prompt, text) if grammar == "python" else json_prefix(text)
        if kept is not None:
            return CodeCompletion(kept, True, grammar, tokens, attempt + 1, round(time.perf_counter() - started, 4))
    return CodeCompletion("", False, grammar, tokens, attempts, round(time.perf_counter() - started, 4),
                          f"could not finish within the token limit: no {grammar} completion that parses in "
                          f"{attempts} attempt(s) of at most {max_new_tokens} tokens")


def parses(prompt: str, text: str, grammar: str) -> bool:
    """Whether ``text`` is valid: Python (``prompt + text`` parses and ``text`` is not blank) or one JSON value."""
    if grammar == "json":
        return json_prefix(text) is not None
    if not text.strip():
        return False
    try:
        ast.parse(prompt + text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True
