"""What an lm-eval run is doing, from its output: a few status lines out of lm-eval's and vLLM's log.

Pure: lines in, status lines out. :mod:`val_probing.evaluate` feeds its runs' output here line by
line (:func:`split_output`), and shows :func:`failure_tail` when a run fails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


_BUILDING = re.compile(r"Building contexts for (\S+) on rank")
_TQDM = re.compile(r"(\d+)%\|[^|]*\|\s*(\d+)/(\d+)")
_ENGINE = re.compile(r"Initializing (\S+) model")
PROGRESS_STEPS = (25, 50, 75, 100)
# The progress bars of the generation itself (vLLM's, then lm-eval's); others (vLLM's "Adding
# requests", "Rendering prompts") finish in a moment and say nothing about the generation.
GENERATION_BARS = ("Processed prompts", "Running generate_until requests")


@dataclass
class LogWatcher:
    """Turns the lines of lm-eval's and vLLM's output into a few status lines (pure: no I/O).

    ``feed(line, now)`` returns the status lines that ``line`` completes: the engine starting, each
    task's requests being built, the generation progress at 25/50/75/100 % (vLLM's "Processed
    prompts" and lm-eval's "Running generate_until requests" bars) and the results being saved.
    ``now`` is seconds since the run started.
    """

    generating_since: float | None = None
    _printed_steps: set[int] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)

    def _once(self, key: str, text: str) -> list[str]:
        if key in self._seen:
            return []
        self._seen.add(key)
        return [text]

    def feed(self, line: str, now: float) -> list[str]:
        engine = _ENGINE.search(line)
        if engine:
            return self._once("engine", f"  starting {engine.group(1)} (model load, ~1 min on CPU)")
        building = _BUILDING.search(line)
        if building:
            task = building.group(1)
            return self._once(f"task:{task}", f"  {task}: requests built ({_duration(now)})")
        if "Running generate_until requests" in line and self.generating_since is None:
            self.generating_since = now
            return self._once("generate", f"  engine ready after {_duration(now)}; generating")
        if "Saving results aggregated" in line:
            return self._once("saving", "  saving results and samples")
        bar = _TQDM.search(line) if line.lstrip().startswith(GENERATION_BARS) else None
        if bar and self.generating_since is not None:
            done, total = int(bar.group(2)), int(bar.group(3))
            pct = 100 * done // total if total else 0
            step = max((s for s in PROGRESS_STEPS if pct >= s), default=None)
            if step is not None and step not in self._printed_steps:
                self._printed_steps.update(s for s in PROGRESS_STEPS if s <= step)
                elapsed = _duration(now - self.generating_since)
                # the bar's own share: a bar that jumps past a step (93/96) is 96%, not the step crossed
                return [f"  generated {done}/{total} prompts ({pct}%, {elapsed})"]
        return []


def split_output(buffer: str) -> tuple[list[str], str]:
    """Complete lines (split at ``\\n`` and tqdm's ``\\r``) and the unfinished rest."""
    parts = re.split(r"[\r\n]", buffer)
    return [p for p in parts[:-1] if p.strip()], parts[-1]


def failure_tail(lines: Sequence[str], n: int = 25) -> list[str]:
    """The last ``n`` log lines worth showing: tqdm progress bars left out."""
    kept = [ln for ln in lines if not _TQDM.search(ln)]
    return kept[-n:]
