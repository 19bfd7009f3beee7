"""One progress bar for every long command: rates are work done over wall time, and the last ones shown are
the summary's.

tqdm's own rate is a smoothed estimate over its refresh intervals, and a bar opened after the first batch
has finished divides that batch's work by a few microseconds (the 257,210,700 tok/s of issue 13). Here
the clock starts when the work starts (``start``), every shown rate is ``amount / (now - start)``, and
``finish`` shows the final amounts over the caller's own measured seconds, the same numbers the summary
line prints, and sets the bar to 100% of what was done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

# (name shown after the number, how to format the number)
RateSpec = tuple[str, Callable[[float], str]]


def per_s(unit: str, scale: float = 1.0, fmt: str = ",.1f") -> RateSpec:
    """A rate shown as ``{amount / seconds / scale:fmt} unit/s``."""
    return (f"{unit}/s", lambda value: format(value / scale, fmt))


class RateBar:
    """A tqdm bar on stderr over ``total`` units of work (None: unknown) with exact rates in its postfix.

    ``rates`` maps an amount's name (passed to :meth:`update`) to how its rate is shown. Nothing is drawn
    when ``enabled`` is false.
    """

    def __init__(
        self, enabled: bool, total: float | None, unit: str, desc: str, rates: dict[str, RateSpec] | None = None
    ) -> None:
        self.enabled, self.total, self.unit, self.desc = enabled, total, unit, desc
        self.rates = rates or {}
        self.bar = None
        self.t0: float | None = None
        self.last_postfix = ""

    def start(self) -> None:
        """Start the clock when the work itself starts, not when setup began; the bar is drawn at the
        first :meth:`update` (so notes printed before it stay on their own lines)."""
        self.t0 = time.perf_counter()

    def _open(self) -> None:
        if not self.enabled or self.bar is not None:
            return
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.total,
            unit=self.unit,
            desc=self.desc,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.0,  # tqdm's remaining-time estimate from the average rate, not the last interval's
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}]{postfix}"
            if self.total
            else "{desc}: {n_fmt} {unit} [{elapsed}]{postfix}",
        )

    def postfix(self, seconds: float, amounts: dict[str, float]) -> str:
        """The rates text: each amount over ``seconds``."""
        seconds = max(seconds, 1e-9)
        return ", ".join(f"{fmt(amounts[name] / seconds)} {label}" for name, (label, fmt) in self.rates.items()
                         if name in amounts)

    def update(self, done: float, **amounts: float) -> None:
        """``done`` units finished so far (absolute); ``amounts`` (absolute) for the rates."""
        if self.t0 is None:
            self.start()
        self.last_postfix = self.postfix(time.perf_counter() - self.t0, amounts)
        self._open()
        if self.bar is None:
            return
        self.bar.start_t = self.bar._time() - (time.perf_counter() - self.t0)  # elapsed since start()
        self.bar.n = done
        self.bar.set_postfix_str(self.last_postfix, refresh=False)
        self.bar.refresh()

    def finish(self, done: float, seconds: float, **amounts: float) -> str:
        """Final state: ``done`` units (100%: the total becomes what was done) and the rates over ``seconds``,
        the caller's measured time, so the bar's last rates equal the summary's. Returns the rates text."""
        self.last_postfix = self.postfix(seconds, amounts)
        self._open()
        if self.bar is not None:
            self.bar.total = done
            self.bar.n = done
            self.bar.start_t = self.bar._time() - seconds  # elapsed shown = the summary's seconds (tqdm's clock)
            self.bar.set_postfix_str(self.last_postfix, refresh=False)
            self.bar.refresh()
        self.close()
        return self.last_postfix

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Stage:
    """A one-line stderr note for a step with no countable progress ("fitting the probe ...", then its time),
    so a long step is never silent."""

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled, self.desc = enabled, desc

    def __enter__(self) -> Stage:
        self.t0 = time.perf_counter()
        if self.enabled:
            _note(f"{self.desc} ...")
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.enabled and exc_type is None:
            _note(f"{self.desc}: done in {time.perf_counter() - self.t0:.1f} s")


def _note(line: str) -> None:
    """A line on stderr that does not tear an open tqdm bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


__all__ = ["RateBar", "Stage", "per_s"]
