"""An image is stored only if its bytes are a whole PNG, JPEG or WebP file."""

from __future__ import annotations

import struct

from core.store.images import sniff
from tests.helpers.images import png


def test_whole_images_are_recognised() -> None:
    assert sniff(png()) == "image/png"
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 200 + b"\xff\xd9"
    assert sniff(jpeg) == "image/jpeg"
    body = b"WEBPVP8 " + b"\x00" * 20
    assert sniff(b"RIFF" + struct.pack("<I", len(body)) + body) == "image/webp"


def test_a_signature_followed_by_anything_is_not_an_image() -> None:
    page = b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>"
    assert sniff(page) == ""
    assert sniff(png() + b"<html>") == ""  # trailing bytes after IEND
    tampered = bytearray(png())
    tampered[20] ^= 0xFF  # a byte of IHDR: its CRC no longer matches
    assert sniff(bytes(tampered)) == ""
    assert sniff(b"\xff\xd8\xff" + b"<html>" * 40) == ""  # no end-of-image marker
    assert sniff(b"RIFF\xff\xff\xff\xffWEBPVP8 ") == ""  # its size does not match
    assert sniff(b"GIF89a") == ""
