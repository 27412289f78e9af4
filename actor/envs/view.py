"""check-environment's live window: what the model sees, redrawn while the user drives (as TMRL's check does).

opencv-python-headless (the base dependency) has no GUI, so the window is matplotlib's Tk backend; it opens
only where a display is available (`can_show`), otherwise check-environment writes its PNG strip alone.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Any

import numpy as np


def can_show() -> bool:
    """A display to draw on and Tk to draw with."""
    has_display = sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY"))
    return has_display and importlib.util.find_spec("tkinter") is not None


def open_view(title: str) -> LiveView | None:
    """The live window, or None (logged) when the display refuses it: the PNG strip is still written."""
    try:
        return LiveView(title)
    except (ImportError, RuntimeError) as e:
        logging.getLogger("tmrlx.actor").warning("no live window (%s); the PNG strip is still written", e)
        return None


class LiveView:
    def __init__(self, title: str):
        import matplotlib

        matplotlib.use("TkAgg", force=True)
        import matplotlib.pyplot as plt

        self.plt = plt
        plt.ion()
        self.fig, self.ax = plt.subplots(num=title)
        self.ax.set_axis_off()
        self.image: Any = None
        self.shown = 0

    def show(self, picture: np.ndarray) -> None:
        """Draw one BGR picture (the lidar beams on the screenshot, or the image history)."""
        rgb = np.ascontiguousarray(picture[..., ::-1])
        if self.image is None or self.image.get_array().shape != rgb.shape:
            self.ax.clear()
            self.ax.set_axis_off()
            self.image = self.ax.imshow(rgb)
        else:
            self.image.set_data(rgb)
        self.fig.canvas.draw_idle()
        self.fig.canvas.flush_events()
        self.shown += 1

    def close(self) -> None:
        self.plt.close(self.fig)
