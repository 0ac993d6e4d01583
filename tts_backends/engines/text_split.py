"""Sentence-ish text splitting for engines whose own frontend is bypassed (CosyVoice3).

CosyVoice3 skips its text frontend, and with it its splitter, whenever the text holds a
`<|...|>` tag, so the worker cuts long text itself. Markup is atomic: pinyin `[h][ào]`,
phonemes `[M][AY0][N][UW1][T]` and `<|...|>` tags are never cut through.
"""

from __future__ import annotations

import re

MAX_PIECE_CHARS = 200

# One atom: a bracketed markup unit, a <|tag|>, or a single character.
_ATOM = re.compile(r"\[[^\[\]\n]{0,40}\]|<\|[^|<>\n]{0,40}\|>|.", re.DOTALL)
_HARD_STOPS = frozenset("。！？\n")
_SOFT_STOPS = frozenset(".!?")  # only when followed by whitespace or the end: "3.14", "e.g."
_PAUSES = frozenset("，,;；：:、 ")


def _atoms(text: str) -> list[str]:
    return _ATOM.findall(text)


def _sentences(atoms: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    for i, atom in enumerate(atoms):
        cur.append(atom)
        nxt = atoms[i + 1] if i + 1 < len(atoms) else ""
        if atom in _HARD_STOPS or (atom in _SOFT_STOPS and (not nxt or nxt.isspace())):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _cut(atoms: list[str], max_chars: int) -> list[list[str]]:
    """Cut an over-long sentence at pauses (commas, spaces), else at any atom boundary."""
    pieces: list[list[str]] = []
    cur: list[str] = []
    size = 0
    last_pause = -1
    for atom in atoms:
        if size + len(atom) > max_chars and cur:
            split_at = last_pause + 1 if last_pause >= 0 else len(cur)
            pieces.append(cur[:split_at])
            cur = cur[split_at:]
            size = sum(len(a) for a in cur)
            last_pause = -1
        cur.append(atom)
        size += len(atom)
        if atom in _PAUSES:
            last_pause = len(cur) - 1
    if cur:
        pieces.append(cur)
    return pieces


def split_text(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Split `text` into pieces of at most ~`max_chars`, at sentence ends where possible."""
    chunks: list[list[str]] = []
    for sentence in _sentences(_atoms(text)):
        if sum(len(a) for a in sentence) > max_chars:
            chunks.extend(_cut(sentence, max_chars))
        else:
            chunks.append(sentence)
    # Pack short sentences together: the model sounds better with some context.
    pieces: list[str] = []
    cur = ""
    for chunk in chunks:
        part = "".join(chunk)
        if cur and len(cur.strip()) + len(part.strip()) + 1 > max_chars:
            pieces.append(cur)
            cur = ""
        cur += part
    pieces.append(cur)
    return [p.strip() for p in pieces if p.strip()]
