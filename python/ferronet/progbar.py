"""Keras-style progress display.

``verbose=1``: a bar redrawn in place (at most ~10 times a second, when the engine hands control
back), e.g. ``12/47 ━━━━━╺────────── 1s 3ms/step - accuracy: 0.91 - loss: 0.31``; when the output
is not a terminal only the final line of each epoch is printed. ``verbose=2``: one line per
epoch. ``verbose=0``: nothing.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progbar"]

_BAR_WIDTH = 20


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(round(seconds))}s"


def _fmt_per_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _fmt_logs(logs: dict) -> str:
    return "".join(f" - {k}: {v:.4f}" for k, v in sorted(logs.items()))


class Progbar:
    """Progress of one pass of ``target`` steps."""

    def __init__(self, target: int, verbose: int = 1, stream=None):
        self.target = target
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool(isatty and isatty()) or "ipykernel" in sys.modules
        self._last_len = 0

    def _write(self, text: str, final: bool) -> None:
        if self.dynamic:
            pad = max(0, self._last_len - len(text))
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self._last_len = len(text)
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, step: int, logs: dict | None = None, final: bool = False) -> None:
        """Shows ``step`` of ``target`` with the running ``logs``."""
        if self.verbose == 0 or (self.verbose == 2 and not final):
            return
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(step, 1)
        w = len(str(self.target))
        if self.verbose == 2:
            line = f"{step:>{w}}/{self.target} - {_fmt_time(elapsed)} - {_fmt_per_step(per_step)}"
        else:
            filled = int(_BAR_WIDTH * step / max(self.target, 1))
            bar = "━" * filled + "─" * (_BAR_WIDTH - filled)
            shown = elapsed if final else per_step * (self.target - step)
            line = f"{step:>{w}}/{self.target} {bar} {_fmt_time(shown)} {_fmt_per_step(per_step)}"
        self._write(line + _fmt_logs(logs or {}), final)
