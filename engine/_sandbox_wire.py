"""The wire between the sandbox's harness and candidate processes (stdlib only).

The host prepends this file to `engine._sandbox_runner` to make the runner's source; it is
never imported by the host except by linters and tests. Messages are length-prefixed
(4 bytes, big-endian) over pipes; their bodies are plain data in a small tagged format
(one tag byte; sizes as 4 bytes): ``N T F`` None and the booleans, ``i`` int (signed,
big-endian), ``f``/``c`` float and complex (IEEE doubles), ``s``/``b`` str (UTF-8,
surrogates passed) and bytes, ``l t S z d`` list, tuple, set, frozenset and dict (an item
count, then the items or key, value pairs), ``I J D E`` a list or tuple of 64-bit ints
or of floats packed as one native array (size in bytes), ``h`` a handle number.

Types are checked exactly: a subclass of a plain type (``Counter``, a namedtuple, an
``IntEnum``, an ``int`` with its own ``__eq__``) travels as its base type's value, read with
the base type's methods, so the receiver never sees the subclass. The decoder is written for
hostile input: bounded nesting and sizes, no ``marshal`` or
``pickle`` (neither is safe on untrusted bytes), anything malformed is `_ProtocolError`.
"""

import os
import struct
from array import array

_MAX_MESSAGE = 256 << 20  # bytes in one message from the candidate
_MAX_DEPTH = 400  # nesting of plain data
_DOUBLE = struct.Struct(">d")
class _Unplain(Exception):
    """A value that is not plain data (and no handle may stand for it)."""


class _ProtocolError(Exception):
    """The candidate sent bytes that are not a well-formed message."""


# --- plain data codec ------------------------------------------------------------------

_SEQUENCES = {list: b"l", tuple: b"t", set: b"S", frozenset: b"z"}
_BUILD = {ord("l"): list, ord("t"): tuple, ord("S"): set, ord("z"): frozenset}


def _n(n):
    return n.to_bytes(4, "big")


def _encode(value, out, handle, depth=0):
    """Appends the encoding of `value` to `out`; `handle(value) -> int` stands for what
    is not plain data (None: raise `_Unplain`)."""
    kind = type(value)
    if kind not in _EXACT and isinstance(value, _BASES):
        value = _as_base(value)  # Counter, OrderedDict, a namedtuple, an IntEnum: the plain value
        kind = type(value)
    if value is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"T" if value else b"F")
    elif kind is int:
        raw = value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
        out.append(b"i" + _n(len(raw)) + raw)
    elif kind is float:
        out.append(b"f" + _DOUBLE.pack(value))
    elif kind is complex:
        out.append(b"c" + _DOUBLE.pack(value.real) + _DOUBLE.pack(value.imag))
    elif kind is str or kind is bytes:
        raw = value.encode("utf-8", "surrogatepass") if kind is str else value
        out.append((b"s" if kind is str else b"b") + _n(len(raw)) + raw)
    elif (kind is list or kind is tuple) and len(value) > 16 and _packed(value, kind, out):
        pass
    elif (kind in _SEQUENCES or kind is dict) and depth < _MAX_DEPTH:
        out.append((b"d" if kind is dict else _SEQUENCES[kind]) + _n(len(value)))
        for item in value.items() if kind is dict else value:
            if kind is dict:
                _encode(item[0], out, handle, depth + 1)
                item = item[1]
            _encode(item, out, handle, depth + 1)
    elif handle is not None:
        out.append(b"h" + _n(handle(value)))
    else:
        raise _Unplain(f"{kind.__name__} is not plain data")


_EXACT = frozenset({type(None), bool, int, float, complex, str, bytes, list, tuple, set, frozenset, dict})
_BASES = (int, float, complex, str, bytes, list, tuple, set, frozenset, dict)


def _as_base(value):
    """A subclass of a plain type as a value of that type, read with the base type's own
    methods: the receiver sees plain data, never the subclass's `__eq__`."""
    if isinstance(value, dict):
        return dict(dict.items(value))
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return base(base.__iter__(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes.__bytes__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return complex(float.__float__(value.real), float.__float__(value.imag))


def _packed(value, kind, out):
    """A long list or tuple of machine ints or of floats as one array: ~50x faster."""
    for code, item_type in (("q", int), ("d", float)):
        if all(type(item) is item_type for item in value):
            try:
                raw = array(code, value).tobytes()
            except OverflowError:  # an int past 64 bits
                return False
            tag = _PACKED_TAGS[(code, kind)]
            out.append(tag + _n(len(raw)) + raw)
            return True
    return False


_PACKED_TAGS = {("q", list): b"I", ("q", tuple): b"J", ("d", list): b"D", ("d", tuple): b"E"}
_UNPACK = {ord(tag): (code, kind) for (code, kind), tag in _PACKED_TAGS.items()}


def _dumps(value, handle):
    out = []
    _encode(value, out, handle)
    return b"".join(out)


def _loads(data, handle):
    """Decodes `_dumps` output; `handle(int)` makes what stands for a handle. Raises
    `_ProtocolError` on anything malformed."""
    try:
        value, end = _decode(data, 0, handle, 0)
    except _ProtocolError:
        raise
    except Exception as exc:  # IndexError past the end, unhashable keys, bad UTF-8...
        raise _ProtocolError(f"{type(exc).__name__} while decoding") from None
    if end != len(data):
        raise _ProtocolError("trailing bytes")
    return value


def _decode(data, pos, handle, depth):
    tag = data[pos]
    pos += 1
    if tag in (78, 84, 70):  # N T F
        return (None, True, False)[(78, 84, 70).index(tag)], pos
    if tag == 102:  # f
        return _DOUBLE.unpack_from(data, pos)[0], pos + 8
    if tag == 99:  # c
        return complex(_DOUBLE.unpack_from(data, pos)[0], _DOUBLE.unpack_from(data, pos + 8)[0]), pos + 16
    size = int.from_bytes(data[pos : pos + 4], "big")
    if len(data) < pos + 4:
        raise _ProtocolError("truncated")
    pos += 4
    if tag in (105, 115, 98):  # i s b
        raw = data[pos : pos + size]
        if len(raw) != size:
            raise _ProtocolError("truncated")
        if tag == 105:
            return int.from_bytes(raw, "big", signed=True), pos + size
        return (str(raw, "utf-8", "surrogatepass") if tag == 115 else bytes(raw)), pos + size
    if tag in _UNPACK:  # I J D E: packed ints or floats
        code, kind = _UNPACK[tag]
        items = array(code)
        items.frombytes(data[pos : pos + size])  # ValueError unless whole items
        if len(items) * items.itemsize != size:
            raise _ProtocolError("truncated")
        return kind(items), pos + size
    if tag == 104:  # h
        return handle(size), pos
    if depth >= _MAX_DEPTH or size > len(data) - pos:
        raise _ProtocolError("too deep or too long")
    items = []
    for _ in range(size * 2 if tag == 100 else size):
        item, pos = _decode(data, pos, handle, depth + 1)
        items.append(item)
    if tag == 100:  # d
        return dict(zip(items[::2], items[1::2], strict=True)), pos
    if tag not in _BUILD:
        raise _ProtocolError(f"unknown tag {tag}")
    return _BUILD[tag](items), pos


# --- framing over pipes ----------------------------------------------------------------


def _send(fd, data):
    view = memoryview(_n(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _recv(fd, limit=_MAX_MESSAGE):
    """One message, or None at a clean end of file."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > limit:
        raise _ProtocolError(f"a message of {size} bytes")
    body = _read_exact(fd, size) if size else b""
    if body is None:
        raise _ProtocolError("truncated message")
    return body


def _read_exact(fd, size):
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
