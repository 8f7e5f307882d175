"""Drawing a grid state as text or as an RGB array (numpy only: no display needed)."""

from __future__ import annotations

import numpy as np

from envs.mdp import GridLayout

CELL = 16  # pixels per cell in rgb_array frames
COLORS = {
    "floor": (235, 235, 235),
    "wall": (60, 60, 70),
    "goal": (70, 180, 90),
    "hazard": (220, 90, 40),
    "start": (200, 200, 240),
    "agent": (40, 90, 220),
    "grid": (200, 200, 200),
}


def render_ansi(layout: GridLayout | None, state: int, num_states: int) -> str:
    """The map in its ASCII format with the agent drawn as `A`."""
    if layout is None:
        return f"state {state} of {num_states}\n"
    rows = [list(row) for row in layout.to_ascii().splitlines()]
    r, c = divmod(state, layout.width)
    rows[r][c] = "A"
    return "\n".join("".join(row) for row in rows) + "\n"


def render_rgb(layout: GridLayout | None, state: int, num_states: int) -> np.ndarray:
    """(H * CELL, W * CELL, 3) uint8 frame. Without a grid layout the states form one row."""
    if layout is None:
        H, W = 1, num_states
        kinds = np.full((H, W), "floor", dtype=object)
    else:
        H, W = layout.height, layout.width
        kinds = np.full((H, W), "floor", dtype=object)
        kinds[layout.starts] = "start"
        kinds[layout.walls] = "wall"
        kinds[layout.goals] = "goal"
        kinds[layout.hazards] = "hazard"
    img = np.zeros((H * CELL, W * CELL, 3), dtype=np.uint8)
    for r in range(H):
        for c in range(W):
            img[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = COLORS[kinds[r, c]]
    img[::CELL, :] = COLORS["grid"]
    img[:, ::CELL] = COLORS["grid"]
    r, c = divmod(state, W)
    pad = CELL // 4
    img[r * CELL + pad : (r + 1) * CELL - pad, c * CELL + pad : (c + 1) * CELL - pad] = COLORS["agent"]
    return img
