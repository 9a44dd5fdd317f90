"""How IR values are written in C: element types and float32 constants."""

from __future__ import annotations

import numpy as np

C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int32": "int32_t", "float32": "float"}


def c_type(dtype: str) -> str:
    """The C type of an IR dtype ("float32" -> "float")."""
    return C_TYPES[dtype]


def float_literal(value: float) -> str:
    """A C float literal that reads back as the same float32."""
    text = f"{np.float32(value):.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"
