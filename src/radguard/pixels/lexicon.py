"""Clinical words weighed by the recognizer itself: the likely spelling of a misread label.

A small or faint label is often read with a letter or two wrong (``PIGHT FIDNEY LONG``), yet
the recognizer gave the right letters much of their probability. Rather than guess from the
string which slips are likely, each nearby spelling made of clinical words is scored by the
recognizer's own output for the crop: the CTC probability of that text, summed over its
alignments, against the reading's. The spelling is a reading of the line when the pixels
support it nearly as well as what was read (:data:`LEAST_SUPPORT`; a line of one short word,
as names often stand, :data:`LONE_SUPPORT`) and far better than every
spelling where a changed word is a census name instead (:data:`NAME_MARGIN`): a name that a
label's spelling lies near (TOWER read ``zower``, POWER near) is left to the other rules.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

LEAST_SUPPORT = -3.0  # log10 of a spelling's probability relative to the reading's, at least
LONE_SUPPORT = -2.0  # ...where one short word holds its letters: names stand so (SYSO as SYST)
NAME_MARGIN = 1.0  # log10 by which it must beat every spelling with a name in its place
_FLOOR = 1e-12  # probabilities are clipped here before logarithms
_PER_WORD = 4  # clinical words tried in place of one word of the reading at most
_SPELLINGS = 64  # spellings of a line scored at most
_SHORTEST = 3  # letters and digits of a spelling (shorter ones identify no one anyway)
_END_KEPT = 6  # letters a clinical word needs for a letter read at an end of it to go
_GLUED_LEAST = 6  # letters of a word read in which two clinical words glued are sought
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WORDS = re.compile(r"(\s+)")  # words and the spaces between them, as read
# a probe name (L12-5) whose letter was read as something else, a point after it (its foot)
_PROBE_HEAD = re.compile(r"([^\s\dCLPSEVT])([.,]?\d{1,2}-\d{1,2}[A-Z]?)")
_PROBE_LETTERS = "LCPSEVT"  # the letters probe names start with (classify._PROBE)


def ctc_log_likelihoods(
    log_probs: NDArray[np.float64], texts: Sequence[Sequence[int]]
) -> NDArray[np.float64]:
    """Natural log of the probability of each text (class indices, the blank 0 excluded)
    under CTC, given one line's per-step log class probabilities (steps, classes): the sum
    over every alignment of the text with the steps. All texts go through the steps at once."""
    steps = log_probs.shape[0]
    count = len(texts)
    longest = max((len(t) for t in texts), default=0)
    size = 2 * longest + 1
    extended = np.zeros((count, size), np.int64)  # blank, c1, blank, c2, ..., blank
    skip = np.zeros((count, size), bool)  # a jump over the blank between two that differ
    for row, text in enumerate(texts):
        if text:
            extended[row, 1 : 2 * len(text) : 2] = text
            skip[row, 3 : 2 * len(text) : 2] = np.asarray(text[1:]) != np.asarray(text[:-1])
    alpha = np.full((count, size), -np.inf)
    alpha[:, 0] = log_probs[0, 0]
    if size > 1:
        alpha[:, 1] = log_probs[0, extended[:, 1]]
    none = np.full((count, 1), -np.inf)
    for t in range(1, steps):
        step = np.concatenate((none, alpha[:, :-1]), axis=1)
        jump = np.concatenate((none, none, alpha[:, :-2]), axis=1)[:, :size]
        alpha = np.logaddexp(np.logaddexp(alpha, step), np.where(skip, jump, -np.inf))
        alpha += log_probs[t][extended]
    ends = np.asarray([2 * len(t) for t in texts])
    last = alpha[np.arange(count), ends]
    before = np.where(ends > 0, alpha[np.arange(count), np.maximum(ends - 1, 0)], -np.inf)
    out: NDArray[np.float64] = np.logaddexp(last, before)
    return out


def distance(a: str, b: str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _edits(word: str) -> set[str]:
    """Every string one deletion, substitution or insertion (of a letter) from ``word``."""
    cuts = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    found = {a + b[1:] for a, b in cuts if b}
    found |= {a + c + b[1:] for a, b in cuts if b for c in _LETTERS}
    found |= {a + c + b for a, b in cuts for c in _LETTERS}
    return found


def nearby(word: str, known: frozenset[str], most: int) -> set[str]:
    """Words of ``known`` within ``most`` (0 to 2) edits of ``word`` (upper case), the
    word itself included."""
    word = word.upper()
    found = {word} & known
    if most >= 1:
        first = _edits(word)
        found |= first & known
        if most >= 2:
            for edit in first:
                found |= _edits(edit) & known
    return found


@lru_cache(maxsize=8192)
def _near_words(word: str, vocabulary: frozenset[str]) -> tuple[str, ...]:
    """``word`` and the clinical words near it (one edit for words of up to three characters,
    two for longer ones), nearest first, lower case where it was read so; numbers as read.
    A clinical word shorter than the word read and under :data:`_END_KEPT` letters keeps its
    first and last letters: a letter more at an end is how names look (HANDA, SYSO), and a
    CTC output lets a letter read surely go for little (blank competes in every step)."""
    upper = word.upper()
    if slip := _PROBE_HEAD.fullmatch(upper):  # a probe name's letter misread (!.12-5: L12-5)
        return (word, *(letter + slip[2] for letter in _PROBE_LETTERS))
    if any(c.isdigit() for c in upper):
        return (word,)
    most = 1 if len(upper) <= 3 else 2
    near = sorted((d, w) for w in vocabulary if (d := _slips(upper, w, most)) is not None)
    if not near and len(upper) >= _GLUED_LEAST and upper.isalpha():
        near = _glued_near(upper, vocabulary, most)
    lower = word.islower()
    words = [word] + [w.lower() if lower else w for _, w in near if w != upper]
    return tuple(dict.fromkeys(words))[: _PER_WORD + 1]


def _slips(read: str, word: str, most: int) -> int | None:
    """The edit distance from ``read`` to the clinical ``word`` where it is ``most`` or less
    and ``word`` keeps the ends that :func:`_near_words` asks of it; else None."""
    if abs(len(word) - len(read)) > most or not _ends_kept(read, word):
        return None
    found = distance(read, word)
    return found if found <= most else None


def _ends_kept(read: str, word: str) -> bool:
    """A clinical ``word`` shorter than ``read`` and under :data:`_END_KEPT` letters keeps
    its first and last letters (see :func:`_near_words`)."""
    return len(word) >= min(len(read), _END_KEPT) or (word[0], word[-1]) == (read[0], read[-1])


def _glued_near(upper: str, vocabulary: frozenset[str], most: int) -> list[tuple[int, str]]:
    """Two clinical words read glued and slipped (``KIDNEVLON``: KIDNEY and LONG), glued as
    they were read, within ``most`` edits in all (each part as :func:`_near_words` allows a
    word), nearest first; each word of two letters or more and one of them of four (as
    :func:`classify._all_clinical` asks of glued words)."""
    words, (forwards, backwards), lengths = _coded(vocabulary)
    size = len(upper)
    heads = _prefix_distances(forwards, lengths, upper)  # word k against upper[:j]
    tails = _prefix_distances(backwards, lengths, upper[::-1])  # ... upper[size - j:]
    found: dict[str, int] = {}
    for cut in range(2, size - 1):
        head, tail = upper[:cut], upper[cut:]
        near_heads = np.flatnonzero(heads[:, cut] <= min(most, 1 if cut <= 3 else 2))
        spare = min(most, 1 if len(tail) <= 3 else 2)
        near_tails = np.flatnonzero(tails[:, size - cut] <= spare)
        for k in near_heads:
            h = words[k]
            if not _ends_kept(head, h):
                continue
            for m in near_tails:
                t = words[m]
                if heads[k, cut] + tails[m, size - cut] > most or max(len(h), len(t)) < 4:
                    continue
                if h + t in vocabulary or not _ends_kept(tail, t):
                    continue
                total = distance(upper, h + t)
                if total <= most:
                    found[h + t] = min(found.get(h + t, most), total)
    return sorted((d, w) for w, d in found.items())


@lru_cache(maxsize=4)
def _coded(
    vocabulary: frozenset[str],
) -> tuple[tuple[str, ...], tuple[NDArray[np.int64], NDArray[np.int64]], NDArray[np.int64]]:
    """The words of two letters or more of ``vocabulary``, their characters as codes (padded
    with -1), forwards and backwards, and their lengths."""
    words = tuple(sorted(w for w in vocabulary if len(w) >= 2))
    longest = max(map(len, words))
    forwards = np.full((len(words), longest), -1, np.int64)
    backwards = np.full((len(words), longest), -1, np.int64)
    for k, word in enumerate(words):
        forwards[k, : len(word)] = [ord(c) for c in word]
        backwards[k, : len(word)] = [ord(c) for c in reversed(word)]
    return words, (forwards, backwards), np.asarray([len(w) for w in words])


def _prefix_distances(
    codes: NDArray[np.int64], lengths: NDArray[np.int64], text: str
) -> NDArray[np.int64]:
    """Edit distance of every word (``codes``, one row each, ``lengths`` long) to every
    prefix of ``text``: (words, len(text) + 1). One dynamic-programming row per character of
    the words for all of them at once; the row's left-to-right step is a running minimum."""
    size = len(text)
    read = np.asarray([ord(c) for c in text], np.int64)
    steps = np.arange(size + 1)
    row = np.tile(steps, (len(codes), 1))
    out = row.copy()
    for i in range(1, codes.shape[1] + 1):
        base = row + 1
        base[:, 0] = i
        base[:, 1:] = np.minimum(base[:, 1:], row[:, :-1] + (codes[:, i - 1, None] != read))
        row = steps + np.minimum.accumulate(base - steps, axis=1)
        done = lengths == i
        out[done] = row[done]
    return out


def spellings(text: str, vocabulary: frozenset[str]) -> list[str]:
    """``text`` with some of its words replaced by clinical words near them (the spaces as
    read), the reading itself left out; at most :data:`_SPELLINGS`."""
    parts = _WORDS.split(text.strip())
    options = [(p,) if not p or p.isspace() else _near_words(p, vocabulary) for p in parts]
    while math.prod(len(o) for o in options) > _SPELLINGS:
        widest = max(range(len(options)), key=lambda k: len(options[k]))
        options[widest] = options[widest][:-1]
    return [s for s in ("".join(c) for c in itertools.product(*options)) if s != text.strip()]


def _styles(word: str) -> tuple[str, ...]:
    """A word as it may be written: upper, lower and title case."""
    return tuple(dict.fromkeys((word.upper(), word.lower(), word.capitalize())))


class Speller:
    """Finds the clinical spelling of a misread label that the recognizer supports (one per
    file: ``clinical`` says whether a whole line is a label for this file's rules; ``names``
    the census names; ``own`` other words that identify: the words of the file's identifying
    values, census or not, and the months)."""

    def __init__(
        self,
        clinical: Callable[[str], bool],
        vocabulary: frozenset[str],
        names: frozenset[str],
        own: frozenset[str] = frozenset(),
        least: float = LEAST_SUPPORT,
        margin: float = NAME_MARGIN,
    ) -> None:
        self._clinical = clinical
        self._vocabulary = vocabulary
        self._names = names
        self._own = own
        self._least = least * math.log(10)
        self._margin = margin * math.log(10)

    def __call__(
        self, probs: NDArray[np.float32], charset: Sequence[str], reading: str
    ) -> str | None:
        """The spelling of ``reading`` the recognizer's per-step class ``probs`` support as
        a label, or None."""
        found = self.weigh(probs, charset, reading)
        if found is None:
            return None
        text, support, margin = found
        # one word of letters (numbers and single letters beside it aside: SYSO 12, R SYSO)
        words = [w for w in re.findall(r"[A-Za-z]+", text) if len(w) >= 2]
        lone = len(words) == 1 and len(words[0]) < _END_KEPT
        least = max(self._least, LONE_SUPPORT * math.log(10)) if lone else self._least
        return text if support >= least and margin >= self._margin else None

    def weigh(
        self, probs: NDArray[np.float32], charset: Sequence[str], reading: str
    ) -> tuple[str, float, float] | None:
        """The best supported clinical spelling of ``reading`` (three letters or digits at
        least), its natural-log probability relative to the reading's, and its margin over
        the best spelling with a word of ``names`` or ``own`` (within one edit more than the
        clinical word was, up to two) in place of a changed word; None when no clinical
        spelling is near."""
        index = {c: k for k, c in enumerate(charset) if c}
        if any(c not in index for c in reading) or len(_alnum(reading)) < _SHORTEST:
            return None
        candidates = [
            s
            for s in spellings(reading, self._vocabulary)
            if len(_alnum(s)) >= _SHORTEST and all(c in index for c in s)
        ]
        if not candidates:
            return None
        log_probs = np.log(np.clip(probs.astype(np.float64), _FLOOR, None))
        texts = [reading.strip(), *candidates]
        scores = ctc_log_likelihoods(log_probs, [[index[c] for c in t] for t in texts])
        # the best supported spelling that is a label (the rules asked in that order only)
        ranked = sorted(range(1, len(texts)), key=lambda k: -scores[k])
        best = next((k for k in ranked if self._clinical(texts[k])), None)
        if best is None:
            return None
        text, support = texts[best], float(scores[best] - scores[0])
        said, meant = _WORDS.split(reading.strip()), _WORDS.split(text)
        rivals: list[str] = []
        for k, (was, now) in enumerate(zip(said, meant, strict=True)):
            if was == now:
                continue
            for part, before, after, meant_part in _pieces(was, now, self._vocabulary):
                letters = re.sub(r"[^A-Za-z]", "", part)
                if not letters:
                    continue
                most = min(2, distance(part.upper(), meant_part.upper()) + 1)
                near = nearby(letters, self._names, most)
                near |= {w for w in self._own if distance(letters.upper(), w) <= most}
                rivals += [
                    "".join([*meant[:k], before, s, after, *meant[k + 1 :]])
                    for name in near
                    if name != meant_part.upper()
                    for s in _styles(name)
                ]
        rivals = [r for r in rivals if all(c in index for c in r)]
        if not rivals:
            return text, support, math.inf
        rival = ctc_log_likelihoods(log_probs, [[index[c] for c in r] for r in rivals])
        return text, support, float(scores[best] - rival.max())


def _pieces(was: str, now: str, vocabulary: frozenset[str]) -> list[tuple[str, str, str, str]]:
    """Where a name could stand in place of the word ``was`` spelled ``now``: the word whole,
    and for two clinical words glued (:func:`_glued_near`) each of the two, in every way the
    reading's letters divide between them as the spelling's edits do. Each as (part read,
    text before it in the spelling, text after it, the part spelled)."""
    out = [(was, "", "", now)]
    if now.upper() in vocabulary or not now.isalpha():
        return out
    edits = distance(was.upper(), now.upper())
    for cut in range(2, len(now) - 1):
        head, tail = now[:cut], now[cut:]
        if head.upper() not in vocabulary or tail.upper() not in vocabulary:
            continue
        for split in range(1, len(was)):
            first, second = was[:split], was[split:]
            if (
                distance(first.upper(), head.upper()) + distance(second.upper(), tail.upper())
                == edits
            ):
                out += [(first, "", tail, head), (second, head, "", tail)]
    return out


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text)
