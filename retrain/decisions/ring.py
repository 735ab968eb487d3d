"""A fixed-size store of errors at slots ``i % size``, as compact as its values allow. Pure Python.

Each model keeps its last 10,000 errors (to locate a change point) and smaller windows of them. A classifier's
errors are 0/1: one bit each instead of a float32 (1.2 KiB instead of 39 KiB for 10,000). The first value that is
not exactly 0.0 or 1.0 (a regression's absolute error, a feature's value) widens the store to float32 for good,
the representation every window had before: either way each slot reads back the float32 value written to it, so
no decision changes.

Pickled, an :class:`ErrorRing` is a plain ``array('f')`` (the layout of snapshots written before it existed, and
still readable by such detectors); :meth:`ErrorRing.of` packs one again when its owner is unpickled.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

_UNPACKED = [tuple(float((byte >> bit) & 1) for bit in range(8)) for byte in range(256)]  # a byte's 8 slots
_FLOAT32 = [array("f", slots).tobytes() for slots in _UNPACKED]


def _is_bit(value: float) -> bool:
    """Exactly +0.0 or 1.0: what one bit stores without changing what is read back (-0.0 is not)."""
    return value == 1.0 or (value == 0.0 and math.copysign(1.0, value) > 0)


class ErrorRing:
    """``size`` float slots, all 0.0 at first: bits while every value written is 0/1, float32 from then on."""

    __slots__ = ("_bits", "_floats", "_size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an error ring needs at least one slot")
        self._size = size
        self._bits: bytearray | None = bytearray((size + 7) // 8)
        self._floats: array[float] | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> ErrorRing:
        """A ring holding ``values`` (slot ``i`` = ``values[i]``), packed if they are all 0/1."""
        floats = array("f", values)
        ring = cls(len(floats))
        if all(_is_bit(value) for value in floats):
            for slot, value in enumerate(floats):
                if value:
                    ring[slot] = 1.0
        else:
            ring._bits, ring._floats = None, floats
        return ring

    @property
    def typecode(self) -> str:
        """``"bit"`` while packed, else the float array's (``"f"``)."""
        return "bit" if self._floats is None else self._floats.typecode

    @property
    def nbytes(self) -> int:
        """Bytes of the values themselves (the object headers aside)."""
        return len(self._bits) if self._bits is not None else len(self._floats) * self._floats.itemsize  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int | slice) -> float | list[float]:
        if isinstance(index, slice):
            return self._all()[index]
        if self._bits is None:
            return self._floats[index]  # type: ignore[index]
        slot = self._slot(index)
        return 1.0 if self._bits[slot >> 3] >> (slot & 7) & 1 else 0.0

    def __setitem__(self, index: int, value: float) -> None:
        if self._bits is not None:
            slot = self._slot(index)
            if value == 1.0:
                self._bits[slot >> 3] |= 1 << (slot & 7)
                return
            if _is_bit(value):
                self._bits[slot >> 3] &= ~(1 << (slot & 7)) & 0xFF
                return
            self._widen()
        self._floats[index] = value  # type: ignore[index]

    def zero(self) -> None:
        """Every slot back to 0.0 (the representation stays)."""
        if self._bits is not None:
            self._bits[:] = bytes(len(self._bits))
        else:
            self._floats[:] = array("f", bytes(4 * self._size))  # type: ignore[index]

    def __reduce__(self) -> tuple[type, tuple[str, bytes]]:
        return array, ("f", self._float32_bytes())

    def _slot(self, index: int) -> int:
        slot = index + self._size if index < 0 else index
        if not 0 <= slot < self._size:
            raise IndexError("error ring index out of range")
        return slot

    def _all(self) -> list[float]:
        if self._bits is None:
            return self._floats.tolist()  # type: ignore[union-attr]
        return [value for byte in self._bits for value in _UNPACKED[byte]][: self._size]

    def _float32_bytes(self) -> bytes:
        if self._bits is None:
            return self._floats.tobytes()  # type: ignore[union-attr]
        return b"".join(_FLOAT32[byte] for byte in self._bits)[: 4 * self._size]

    def _widen(self) -> None:
        self._floats = array("f", self._float32_bytes())
        self._bits = None
