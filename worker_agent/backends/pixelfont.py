"""A 5x7 pixel font (upper case, digits, common punctuation) for the synthetic image backend's captions.

Each glyph is seven rows of five bits, written as 14 hex digits (two per row, the top row first; bit 4
is the leftmost pixel). Lower case is drawn as upper case; a character without a glyph as ``?``.
"""

from __future__ import annotations

WIDTH, HEIGHT = 5, 7
ADVANCE = WIDTH + 1
"""Horizontal distance from one character to the next."""
LINE = HEIGHT + 2
"""Vertical distance from one line to the next."""

_GLYPHS = {
    "A": "0e11111f111111",
    "B": "1e11111e11111e",
    "C": "0e11101010110e",
    "D": "1c12111111121c",
    "E": "1f10101e10101f",
    "F": "1f10101e101010",
    "G": "0e11101711110f",
    "H": "1111111f111111",
    "I": "0e04040404040e",
    "J": "0702020202120c",
    "K": "11121418141211",
    "L": "1010101010101f",
    "M": "111b1515111111",
    "N": "11111915131111",
    "O": "0e11111111110e",
    "P": "1e11111e101010",
    "Q": "0e11111115120d",
    "R": "1e11111e141211",
    "S": "0f10100e01011e",
    "T": "1f040404040404",
    "U": "1111111111110e",
    "V": "11111111110a04",
    "W": "1111111515150a",
    "X": "11110a040a1111",
    "Y": "1111110a040404",
    "Z": "1f01020408101f",
    "0": "0e11131519110e",
    "1": "040c040404040e",
    "2": "0e11010204081f",
    "3": "1f02040201110e",
    "4": "02060a121f0202",
    "5": "1f101e0101110e",
    "6": "0608101e11110e",
    "7": "1f010204080808",
    "8": "0e11110e11110e",
    "9": "0e11110f01020c",
    " ": "00000000000000",
    ".": "00000000000c0c",
    ",": "000000000c0408",
    "-": "0000001f000000",
    "_": "0000000000001f",
    "!": "04040404040004",
    "?": "0e110102040004",
    "'": "0c040800000000",
    '"': "0a0a0a00000000",
    ":": "000c0c000c0c00",
    ";": "000c0c000c0408",
    "/": "00010204081000",
    "(": "02040808080402",
    ")": "08040202020408",
    "+": "0004041f040400",
    "=": "00001f001f0000",
    "&": "0c12140815120d",
    "#": "0a0a1f0a1f0a0a",
    "*": "0004150e150400",
}


def glyph(char: str) -> tuple[int, ...]:
    """The seven rows of ``char`` (bit 4 = leftmost pixel)."""
    code = _GLYPHS.get(char.upper(), _GLYPHS["?"])
    return tuple(int(code[i : i + 2], 16) for i in range(0, 14, 2))


def wrap(text: str, columns: int, lines: int) -> list[str]:
    """``text`` on at most ``lines`` lines of at most ``columns`` characters, broken between words where
    it can; what does not fit ends in ``...``."""
    words = text.split()
    out: list[str] = []
    current = ""
    for word in words:
        while len(word) > columns:  # a word longer than a line is cut into pieces
            if current:
                out.append(current)
                current = ""
            out.append(word[:columns])
            word = word[columns:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= columns:
            current = candidate
        else:
            out.append(current)
            current = word
    if current:
        out.append(current)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: max(0, columns - 3)] + "..."
    return out
