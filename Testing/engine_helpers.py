"""Small helpers shared by the engine tests (imported by name; fixtures live in conftest.py)."""
import re

import numpy as np


def rotation(deg_x: float, deg_z: float) -> np.ndarray:
    ax, az = np.deg2rad(deg_x), np.deg2rad(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def is_one_sentence(message: str) -> bool:
    """One line, ends with a full stop, no second sentence starting after it."""
    return "\n" not in message and message.endswith(".") and not re.search(r"\.\s+[A-Z]", message)
