"""The most probable reading of a line that is a clinical label, and how much less probable
it is than the line's best reading (CTC decoding constrained to the labels' language).

A small or faint label is often misread by a character or two (``PIGHT FIDNEY LONG``): the
recognizer's best reading matches nothing, yet its class probabilities at each step still
hold the label's letters a little below the ones it picked. A text-only correction (edit
distance to a word list) would keep any name that is a letter or two from a clinical word;
this asks the image instead: the search below finds the reading, among those the labels'
language allows, that the recognizer's own probabilities make most likely, and reports its
probability relative to the best unconstrained reading. Only a label nearly as likely as
what was read (``clean._LABEL_RATIO``) keeps its pixels, and only when no reading of the line
identifies anyone.

The language (``label_language``): clinical words (:data:`classify.CLINICAL_VOCABULARY`),
numbers of up to three digits with up to two decimals, a number's ``%``, joined by a space,
``-``, ``/`` or nothing (``L12-5``, ``cm/s``, ``LIVERTRV``). Letters are read without case.
The classifier still judges the reading it finds (glued words, digits, probe names): this
only proposes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

_SEPARATORS = " -/"
_INTEGER = 3  # digits of a number's whole part
_FRACTION = 2  # digits after its point
_FLOOR = 1e-2  # a symbol less probable than this at a step (relative to the step's best)
# is not tried there: a label needs 1% of the best reading's probability in all
_WIDTH = 24  # prefixes kept per step
_TRIED = 6  # symbols tried per step at most

# automaton states: (kind, value); kinds: start of an atom, inside a word (trie node),
# whole part of a number (digits), its point, its fraction (digits), after a percent sign
_START, _WORD, _WHOLE, _POINT, _FRACT, _PERCENT = range(6)
State = tuple[int, int]


@dataclass(frozen=True)
class Language:
    """The labels' language as a trie of words and the rules for numbers (build once)."""

    children: tuple[dict[str, int], ...]
    terminal: tuple[bool, ...]

    @classmethod
    def of(cls, words: Iterable[str]) -> Language:
        children: list[dict[str, int]] = [{}]
        terminal = [False]
        for word in sorted({w.upper() for w in words if w.isalpha()}):
            node = 0
            for letter in word:
                nxt = children[node].get(letter)
                if nxt is None:
                    nxt = len(children)
                    children[node][letter] = nxt
                    children.append({})
                    terminal.append(False)
                node = nxt
            terminal[node] = True
        return cls(tuple(children), tuple(terminal))

    def complete(self, state: State) -> bool:
        """An atom ends at ``state`` (a separator, another atom or the line's end may follow)."""
        kind, value = state
        if kind == _WORD:
            return self.terminal[value]
        return kind in (_WHOLE, _FRACT, _PERCENT)

    def step(self, states: frozenset[State], symbol: str) -> frozenset[State]:
        """The states after reading ``symbol`` (upper case) from any of ``states``."""
        out: set[State] = set()
        for state in states:
            kind, value = state
            done = kind == _START or self.complete(state)
            if symbol.isalpha():
                if kind == _WORD and symbol in self.children[value]:
                    out.add((_WORD, self.children[value][symbol]))
                if done and symbol in self.children[0]:
                    out.add((_WORD, self.children[0][symbol]))
            elif symbol.isdigit():
                if kind == _WHOLE and value < _INTEGER:
                    out.add((_WHOLE, value + 1))
                elif kind == _POINT:
                    out.add((_FRACT, 1))
                elif kind == _FRACT and value < _FRACTION:
                    out.add((_FRACT, value + 1))
                if done and kind not in (_WHOLE, _FRACT):
                    out.add((_WHOLE, 1))  # a number glued after a word (L12) or a percent
            elif symbol == "." and kind == _WHOLE:
                out.add((_POINT, 0))
            elif symbol == "%" and kind in (_WHOLE, _FRACT):
                out.add((_PERCENT, 0))
            elif symbol in _SEPARATORS and kind != _START and self.complete(state):
                out.add((_START, 0))
        return frozenset(out)

    def accepts(self, states: frozenset[State]) -> bool:
        return any(self.complete(s) for s in states)


@lru_cache(maxsize=1)
def label_language() -> Language:
    from radguard.pixels.classify import CLINICAL_VOCABULARY

    return Language.of(CLINICAL_VOCABULARY)


@lru_cache(maxsize=8)
def _folding(charset: tuple[str, ...]) -> tuple[tuple[str, ...], NDArray[np.float32]]:
    """Symbols read without case (blank first) and the matrix that sums each character's
    probability into its symbol's."""
    symbols: list[str] = [""]
    index: dict[str, int] = {}
    rows = []
    for char in charset[1:]:
        symbol = char.upper() if char.isalpha() and char.isascii() else char
        if symbol not in index:
            index[symbol] = len(symbols)
            symbols.append(symbol)
        rows.append(index[symbol])
    matrix = np.zeros((len(charset), len(symbols)), np.float32)
    matrix[0, 0] = 1.0
    for k, column in enumerate(rows, start=1):
        matrix[k, column] = 1.0
    return tuple(symbols), matrix


def nearest_label(
    probs: NDArray[np.float32], charset: Sequence[str], language: Language | None = None
) -> tuple[str, float] | None:
    """The most probable reading of one line (its CTC class probabilities per step, class 0
    the blank) in the labels' language, and its probability relative to the most probable
    reading of all (1.0: the best reading is a label); None when no reading in the language
    survives the search."""
    language = language or label_language()
    symbols, matrix = _folding(tuple(charset))
    folded = probs.astype(np.float64) @ matrix
    # the same scale at every step for both searches: their ratio is unchanged, and long
    # lines do not underflow
    folded /= folded.max(axis=1, keepdims=True).clip(min=1e-12)
    best = _search(folded, symbols, None)
    found = _search(folded, symbols, language)
    if found is None or best is None or best[1] <= 0.0:
        return None
    text, p = found
    return text, min(1.0, p / best[1])


def _search(
    folded: NDArray[np.float64], symbols: tuple[str, ...], language: Language | None
) -> tuple[str, float] | None:
    """CTC prefix beam search over ``folded`` (steps, symbols), every prefix a reading the
    ``language`` can go on from (None: any); the most probable complete reading."""
    start: frozenset[State] = frozenset({(_START, 0)})
    # prefix -> (probability ending in blank, ending in its last symbol), automaton states
    table: dict[tuple[int, ...], tuple[float, float]] = {(): (1.0, 0.0)}
    states: dict[tuple[int, ...], frozenset[State]] = {(): start}
    moves: dict[tuple[frozenset[State], int], frozenset[State]] = {}
    for step in folded:
        candidates = np.flatnonzero(step >= _FLOOR)
        if len(candidates) > _TRIED:  # a step where anything goes (speckle): the likeliest
            candidates = candidates[np.argsort(step[candidates])[-_TRIED:]]
        following: dict[tuple[int, ...], list[float]] = {}
        for prefix, (blank, char) in table.items():
            total = blank + char
            for c in candidates:
                p = float(step[c])
                if c == 0:
                    entry = following.setdefault(prefix, [0.0, 0.0])
                    entry[0] += total * p
                    continue
                if prefix and prefix[-1] == c:
                    held = following.setdefault(prefix, [0.0, 0.0])
                    held[1] += char * p  # the same symbol held
                    if blank == 0.0:
                        continue
                    source = blank  # a repeat needs a blank between
                else:
                    source = total
                extended = (*prefix, int(c))
                if language is not None and extended not in states:
                    key = (states[prefix], int(c))
                    nxt = moves.get(key)
                    if nxt is None:
                        nxt = moves[key] = language.step(states[prefix], symbols[c])
                    if not nxt:
                        continue
                    states[extended] = nxt
                entry = following.setdefault(extended, [0.0, 0.0])
                entry[1] += source * p
        ranked = sorted(following.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:_WIDTH]
        table = {prefix: (b, c) for prefix, (b, c) in ranked if b + c > 0.0}
        if not table:
            return None
        if language is not None:  # the states of prefixes that left the beam are not needed
            states = {prefix: states[prefix] for prefix in table}
    done = [
        (prefix, b + c)
        for prefix, (b, c) in table.items()
        if prefix and (language is None or language.accepts(states[prefix]))
    ]
    if not done:
        return None
    prefix, p = max(done, key=lambda item: item[1])
    return "".join(symbols[i] for i in prefix), p
