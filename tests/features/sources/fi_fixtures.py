"""First Impressions V2 pickles as Python 2 wrote them, assembled opcode by opcode (shared by the tests).

What Python 2's ``cPickle.dump(obj, f, 2)`` writes for the official files: every object is memoised (``BINPUT``) and
reused (``BINGET``); py2 ``str`` values are ``SHORT_BINSTRING``/``BINSTRING`` holding UTF-8 bytes; the five traits are
``BINFLOAT``; the ``interview`` scores are NumPy 1.x ``numpy.float64`` scalars: ``GLOBAL 'numpy.core.multiarray
scalar'``, ``GLOBAL 'numpy dtype'`` REDUCEd with ``('f8', 0, 1)`` and BUILT with ``(3, '<', None, None, None, -1, -1,
0)``, then the 8 raw bytes as a py2 ``str``, ``TUPLE2``, ``REDUCE``.
"""

from __future__ import annotations

import struct

__all__ = ["Py2Pickle", "annotation_bytes", "transcription_bytes"]


class Py2Pickle:
    """Assemble protocol-2 opcodes the way Python 2's cPickle memoises them."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.memo: dict[object, int] = {}

    def put(self, key: object | None = None) -> None:
        n = len(self.memo) if key is None or key not in self.memo else self.memo[key]
        self.memo[key if key is not None else ("anon", n)] = n
        self.out += b"q" + bytes([n]) if n < 256 else b"r" + struct.pack("<I", n)  # BINPUT / LONG_BINPUT

    def reuse(self, key: object) -> bool:
        if key in self.memo:
            self.out += b"h" + bytes([self.memo[key]])  # BINGET
            return True
        return False

    def str_(self, raw: bytes) -> None:
        """A py2 ``str`` (bytes)."""
        if self.reuse(("str", raw)):
            return
        self.out += (b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<i", len(raw))) + raw
        self.put(("str", raw))

    def unicode_(self, text: str) -> None:
        raw = text.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE
        self.put()

    def float_(self, x: float) -> None:
        self.out += b"G" + struct.pack(">d", x)  # BINFLOAT (not memoised by cPickle)

    def global_(self, module: str, name: str) -> None:
        if self.reuse(("global", module, name)):
            return
        self.out += b"c" + f"{module}\n{name}\n".encode()  # GLOBAL
        self.put(("global", module, name))

    def dtype(self, code: str = "f8", order: str = "<", state: bytes | None = None) -> None:
        if self.reuse(("dtype", code, order)):
            return
        self.global_("numpy", "dtype")
        self.str_(code.encode())
        self.out += b"K\x00K\x01\x87"  # BININT1 0, BININT1 1, TUPLE3
        self.put()
        self.out += b"R"  # REDUCE
        self.put(("dtype", code, order))
        if state is None:
            self.out += b"(K\x03"  # MARK, BININT1 3
            self.str_(order.encode())
            self.out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # None×3, -1, -1, 0, TUPLE
        else:
            self.out += state
        self.put()
        self.out += b"b"  # BUILD

    def np_scalar(self, raw: bytes, code: str = "f8", order: str = "<", module: str = "numpy.core.multiarray") -> None:
        self.global_(module, "scalar")
        self.dtype(code, order)
        self.str_(raw)
        self.out += b"\x86"  # TUPLE2
        self.put()
        self.out += b"R"  # REDUCE
        self.put()

    def np_float64(self, x: float, **kw) -> None:
        self.np_scalar(struct.pack("<d", x), **kw)

    def dict_(self, items, write_key, write_value) -> None:
        self.out += b"}"  # EMPTY_DICT
        self.put()
        self.out += b"("  # MARK
        for k, v in items:
            write_key(k)
            write_value(v)
        self.out += b"u"  # SETITEMS

    def bytes(self) -> bytes:
        return bytes(self.out + b".")  # STOP


def annotation_bytes(scores: dict[str, dict[str, float]], *, interview_module: str = "numpy.core.multiarray") -> bytes:
    """An ``annotation_*.pkl`` as the official files hold it (traits: floats; interview: numpy.float64)."""
    p = Py2Pickle()

    def key(k: str) -> None:
        p.str_(k.encode("utf-8"))

    def trait_scores(trait: str) -> None:
        write = (lambda x: p.np_float64(x, module=interview_module)) if trait == "interview" else p.float_
        p.dict_(scores[trait].items(), key, write)

    p.dict_(((t, t) for t in scores), key, trait_scores)
    return p.bytes()


def transcription_bytes(texts: dict[str, str | bytes], unicode_names: tuple[str, ...] = ()) -> bytes:
    """A ``transcription_*.pkl``: {py2 str name: py2 str (UTF-8 bytes) transcript}; names in ``unicode_names``
    get a py2 ``unicode`` transcript (BINUNICODE) instead; ``bytes`` values are written as they are."""
    p = Py2Pickle()

    def value(item):
        name, text = item
        if isinstance(text, bytes):
            p.str_(text)
        elif name in unicode_names:
            p.unicode_(text)
        else:
            p.str_(text.encode("utf-8"))

    p.out += b"}"
    p.put()
    p.out += b"("
    for name, text in texts.items():
        p.str_(name.encode("utf-8"))
        value((name, text))
    p.out += b"u"
    return p.bytes()
