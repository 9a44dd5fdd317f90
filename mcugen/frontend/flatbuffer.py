"""A small read-only FlatBuffers decoder that checks every offset against the buffer.

Just enough of the binary format to walk a TFLite model without importing TensorFlow or the
``flatbuffers`` package (so that ``mcugen inspect`` starts fast), and strict enough that
truncated or random bytes raise FlatbufferError instead of reading garbage or looping.

Format reminders (all little endian):
- the buffer starts with a uoffset (uint32) to the root table, then a 4-byte file identifier;
- a table starts with a soffset (int32) back to its vtable: ``vtable = table - soffset``;
- a vtable is uint16s: its own size in bytes, the table's size, then one offset per field
  (relative to the table; 0 or beyond the vtable means "absent, use the schema default");
- a reference field holds a uoffset relative to the field's own position;
- a vector (and a string) is a uint32 length followed by the elements; a vector of tables holds
  one uoffset per element.
"""

from __future__ import annotations

import struct
from typing import Any

_UOFFSET = struct.Struct("<I")
_SOFFSET = struct.Struct("<i")
_VOFFSET = struct.Struct("<H")


class FlatbufferError(Exception):
    """The bytes are not a well-formed flatbuffer (truncated, corrupt, or not one at all)."""


def _unpack(fmt: struct.Struct, buf: bytes, pos: int, what: str) -> Any:
    if pos < 0 or pos + fmt.size > len(buf):
        raise FlatbufferError(f"{what} at byte {pos} lies outside the {len(buf)}-byte buffer")
    return fmt.unpack_from(buf, pos)[0]


def _follow(buf: bytes, pos: int, what: str) -> int:
    """The position a uoffset stored at ``pos`` points to."""
    target = pos + _unpack(_UOFFSET, buf, pos, what)
    if target >= len(buf):
        raise FlatbufferError(f"{what} points to byte {target}, past the end of the buffer")
    return target


def root_table(buf: bytes, file_identifier: bytes) -> "Table":
    """The root table of ``buf``, after checking its 4-byte file identifier."""
    if len(buf) < 8:
        raise FlatbufferError(f"only {len(buf)} bytes")
    found = buf[4:8]
    if found != file_identifier:
        raise FlatbufferError(f"file identifier is {found!r}, expected {file_identifier!r}")
    return Table(buf, _follow(buf, 0, "root offset"))


class Table:
    """One table of a flatbuffer. Fields are addressed by their slot (the field's index in
    the schema; a union takes two slots: its type, then its value)."""

    __slots__ = ("_buf", "_pos", "_vtable", "_vtable_size", "_table_size")

    def __init__(self, buf: bytes, pos: int) -> None:
        self._buf = buf
        self._pos = pos
        self._vtable = pos - _unpack(_SOFFSET, buf, pos, "table")
        self._vtable_size = _unpack(_VOFFSET, buf, self._vtable, "vtable")
        self._table_size = _unpack(_VOFFSET, buf, self._vtable + 2, "vtable")
        if self._vtable_size < 4 or self._vtable + self._vtable_size > len(buf):
            raise FlatbufferError(f"bad vtable at byte {self._vtable}")
        if self._table_size < 4 or pos + self._table_size > len(buf):
            raise FlatbufferError(f"table at byte {pos} runs past the end of the buffer")

    @classmethod
    def empty(cls) -> "Table":
        """A table with every field absent: it answers each read with the schema default.
        Stands in for an optional sub-table (such as an op's options) that is missing."""
        table = cls.__new__(cls)
        table._buf, table._pos, table._vtable, table._vtable_size, table._table_size = (
            b"", 0, 0, 0, 0)
        return table

    def _field(self, slot: int, size: int) -> int | None:
        """Absolute position of a field's value, or None if the field is absent."""
        entry = 4 + 2 * slot
        if entry + 2 > self._vtable_size:
            return None
        offset = _VOFFSET.unpack_from(self._buf, self._vtable + entry)[0]
        if offset == 0:
            return None
        if offset + size > self._table_size:
            raise FlatbufferError(f"field {slot} of the table at byte {self._pos} overflows it")
        return self._pos + offset

    def has(self, slot: int) -> bool:
        return self._field(slot, 1) is not None

    def scalar(self, slot: int, fmt: str, default: Any) -> Any:
        """A scalar field in struct format ``fmt`` ("b", "B", "i", "I", "f", "q", "?")."""
        code = struct.Struct("<" + fmt)
        pos = self._field(slot, code.size)
        return default if pos is None else code.unpack_from(self._buf, pos)[0]

    def table(self, slot: int) -> "Table | None":
        pos = self._field(slot, 4)
        return None if pos is None else Table(self._buf, _follow(self._buf, pos, "table field"))

    def _vector(self, slot: int, element_size: int) -> tuple[int, int] | None:
        """(position of the first element, length) of a vector field, or None if absent."""
        pos = self._field(slot, 4)
        if pos is None:
            return None
        start = _follow(self._buf, pos, "vector field")
        length = _unpack(_UOFFSET, self._buf, start, "vector length")
        if start + 4 + length * element_size > len(self._buf):
            raise FlatbufferError(f"vector of {length} at byte {start} runs past the end")
        return start + 4, length

    def tables(self, slot: int) -> list["Table"]:
        """A vector of tables (empty if the field is absent)."""
        vector = self._vector(slot, 4)
        if vector is None:
            return []
        first, length = vector
        return [Table(self._buf, _follow(self._buf, first + 4 * i, "vector element"))
                for i in range(length)]

    def scalars(self, slot: int, fmt: str) -> tuple:
        """A vector of scalars in struct format ``fmt`` (empty if the field is absent)."""
        size = struct.calcsize("<" + fmt)
        vector = self._vector(slot, size)
        if vector is None:
            return ()
        first, length = vector
        return struct.unpack_from(f"<{length}{fmt}", self._buf, first)

    def bytes(self, slot: int) -> bytes | None:
        """A vector of ubyte, or None if the field is absent."""
        vector = self._vector(slot, 1)
        if vector is None:
            return None
        first, length = vector
        return self._buf[first:first + length]

    def string(self, slot: int) -> str | None:
        raw = self.bytes(slot)
        return None if raw is None else raw.decode("utf-8", errors="replace")
