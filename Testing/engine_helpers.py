"""Small helpers shared by the engine tests (imported by name; fixtures live in conftest.py)."""
import re

import numpy as np


def rotation(ax: float, ay: float = 0.0, az: float = 0.0) -> np.ndarray:
    """Rotation matrix ``Rz @ Ry @ Rx`` for angles in radians: oblique test directions."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def is_one_sentence(message: str) -> bool:
    """One line, ends with a full stop, no second sentence starting after it."""
    return "\n" not in message and message.endswith(".") and not re.search(r"\.\s+[A-Z]", message)
