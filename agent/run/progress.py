"""A live progress line: steps, SPS, return and success, watchable with no account at all.

On a terminal the line redraws in place; elsewhere (CI logs, pipes) it prints a plain line
every few seconds instead."""

from __future__ import annotations

import sys
import time

from agent.run.scoring import kept_score


class Progress:
    def __init__(self, total: int, *, start: int = 0, enabled: bool = True, every_s: float = 5.0) -> None:
        self.total, self.enabled, self.every_s = total, enabled, every_s
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.last: dict = {}
        self.eval: dict = {}

    def update(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.last |= {k: v for k, v in metrics.items() if k.startswith("charts/")}
        now = time.time()
        if self.tty or now - self.last_print >= self.every_s:
            self.last_print = now
            self._draw(step)

    def note(self, step: int, result: dict) -> None:
        self.eval = result
        if self.enabled:
            self._draw(step, newline=True)

    def _draw(self, step: int, newline: bool = False) -> None:
        m = self.last
        parts = [f"{step:>10,}/{self.total:,} steps ({step / self.total:5.1%})", f"SPS {m.get('charts/SPS', 0):,.0f}"]
        if "charts/episodic_return" in m:
            parts.append(f"return {m['charts/episodic_return']:.3f}")
            if "charts/success_rate" in m:
                parts.append(f"success {m['charts/success_rate']:.1%}")
        if self.eval:
            what = "score" if "normalized_score" in self.eval else "return"
            rate = f"{self.eval['success_rate']:.1%} " if "success_rate" in self.eval else ""
            parts.append(f"greedy eval {rate}({what} {kept_score(self.eval):.3f})")
        line = " | ".join(parts)
        if self.tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if newline else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
