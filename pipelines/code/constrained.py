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
import threading
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
        self.stop_ids = tuple(stop_ids)
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


class _GrammarMask:
    """The grammar's allowed next tokens for one decode: one bitmask, filled in line or beside the forward.

    xgrammar's ``fill_next_token_bitmask`` releases the GIL, so a worker thread fills the mask for step t
    (it depends only on the tokens accepted so far) while the main thread runs the model's forward for step t;
    the main thread then waits for the fill (usually already done), applies the bitmask in place and accepts
    the chosen token. One bitmask, allocated once, serves every step; nothing is allocated per step. Without
    ``overlap`` the fill runs in line, in ``apply``: the default, since on the 2-CPU machine shared with other work
    the worker thread cost more than it hid (benchmarks/README.md, code domain); with a free core it can hide the fill.
    """

    def __init__(self, compiled: Any, cache: GrammarCache, *, overlap: bool = False) -> None:
        xgr = cache.xgr
        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, cache.vocab_size)
        self._apply = xgr.apply_token_bitmask_inplace
        self._vocab_size = cache.vocab_size
        self._stops = frozenset(cache.stop_ids)
        # Two locks held as binary semaphores (released by the other thread): cheaper than threading.Semaphore.
        self._go = threading.Lock()
        self._filled = threading.Lock()
        self._go.acquire()
        self._filled.acquire()
        self._need_apply = True
        self._error: BaseException | None = None
        self._closed = False
        self._worker = None
        if overlap:
            self._worker = threading.Thread(target=self._fill_forever, name="grammar-mask", daemon=True)
            self._worker.start()

    def _fill_forever(self) -> None:
        while True:
            self._go.acquire()
            if self._closed:
                return
            try:
                # False: every token is allowed, the logits need no mask.
                self._need_apply = self.matcher.fill_next_token_bitmask(self.bitmask)
            except BaseException as error:  # handed to the main thread, which raises it in apply()
                self._error = error
            self._filled.release()

    def start_fill(self) -> None:
        """Fill the mask of the next step in the worker (call once per step, before its forward)."""
        if self._worker is not None:
            self._go.release()

    def apply(self, logits: Any) -> None:
        """Wait for the fill started last, then set the logits of disallowed tokens to -inf in place."""
        if self._worker is None:
            self._need_apply = self.matcher.fill_next_token_bitmask(self.bitmask)
        else:
            self._filled.acquire()
            if self._error is not None:
                raise self._error
        if self._need_apply:
            self._apply(logits, self.bitmask, vocab_size=self._vocab_size)

    def accept(self, token: int) -> bool:
        return self.matcher.accept_token(token)

    def terminated_by(self, token: int) -> bool:
        """Whether accepting ``token`` ended the grammar (only a stop token can)."""
        return token in self._stops and self.matcher.is_terminated()

    def close(self) -> None:
        """Stop the worker (after the fill in flight, if any)."""
        if self._worker is None:
            return
        self._closed = True
        self._go.release()
        self._worker.join()


def decode(model: Any, prompt_ids: Sequence[int], *, max_new_tokens: int, stop_ids: Sequence[int],
           compiled: Any = None, cache: GrammarCache | None = None, temperature: float = 0.0,
           seed: int = 0, overlap: bool = False) -> list[int]:
    """Token by token (KV cache), greedy or seeded sampling, masked by ``compiled`` when given.

    The per-step work is the same with and without a grammar except for the mask: its fill (in line, or in a
    worker thread beside the forward with ``overlap``: :class:`_GrammarMask`), its application in place and the
    matcher's accept.
    """
    import torch

    mask = _GrammarMask(compiled, cache, overlap=overlap) if compiled is not None else None
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids)], device=device)
    step = torch.empty((1, 1), dtype=torch.long, device=device)  # the next input, rewritten in place
    out: list[int] = []
    past = None
    stops = frozenset(stop_ids)
    try:
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                if mask is not None:
                    mask.start_fill()
                result = model(input_ids=ids, use_cache=True, **({} if past is None else {_CACHE_ARG: past}))
                past = getattr(result, "cache", None) or result.past_key_values
                logits = result.logits[:, -1, :].float().cpu()
                if cache is not None and logits.shape[-1] > cache.vocab_size:
                    logits = logits[:, :cache.vocab_size]
                if mask is not None:
                    mask.apply(logits)
                if temperature > 0:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator)[0, 0])
                else:
                    token = int(logits.argmax())
                if token in stops:
                    break
                if mask is not None and not mask.accept(token):
                    break
                out.append(token)
                if mask is not None and mask.terminated_by(token):
                    break
                step.fill_(token)
                ids = step
    finally:
        if mask is not None:
            mask.close()
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
