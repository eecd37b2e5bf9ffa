"""A training run's pace, told steadily: tokens per second over a window of recent optimizer
steps, counting only the time those steps took, and the time left as the remaining steps at
that pace, plus the evaluations still to come at their measured length, plus the run's other
overhead per step so far (checkpoints, logging).

A figure computed from the time since the start and reported at every log call zigzags: an
evaluation log and a training log at the same step give two values (the second after the
evaluation's seconds were added), and single steps of a small model differ a lot in length.
The trainer's callback feeds this class and reports its figures once per training log."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Pace:
    window: int = 50  # optimizer steps the pace is measured over
    _wall_started: float | None = None
    _step_started: float | None = None
    _train_s: float = 0.0  # seconds spent inside optimizer steps since the start
    _eval_s: list[float] = field(default_factory=list)  # each evaluation's length
    _start_step: int = 0
    _last_step: int = 0
    _samples: deque[tuple[int, float, int]] = field(default_factory=deque)  # step, train_s, tokens

    def begin(self, now: float, step: int, tokens: int) -> None:
        """Training (re)starts at ``step`` (a resume starts past 0) with ``tokens`` seen."""
        self._wall_started = now
        self._step_started = None
        self._start_step = self._last_step = step
        self._train_s = 0.0
        self._eval_s.clear()
        self._samples.clear()
        self._samples.append((step, 0.0, tokens))

    def step_begin(self, now: float) -> None:
        """Training (re)starts now: the next step's time counts from here (the latest call
        wins, so work between steps that is not training calls it again when it ends)."""
        self._step_started = now

    def step_end(self, now: float, step: int, tokens: int) -> None:
        if self._wall_started is None:
            self.begin(now, step - 1, tokens)
        if self._step_started is not None:
            self._train_s += max(0.0, now - self._step_started)
            self._step_started = None
        self._last_step = step
        self._samples.append((step, self._train_s, tokens))
        while len(self._samples) > self.window + 1:
            self._samples.popleft()

    def evaluated(self, seconds: float) -> None:
        """An evaluation during training took ``seconds``."""
        self._eval_s.append(max(0.0, seconds))

    def tokens_per_s(self) -> float | None:
        """Training tokens per second over the window; None before a step or without tokens."""
        if len(self._samples) < 2:
            return None
        (_, t0, n0), (_, t1, n1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or n1 <= n0:
            return None
        return (n1 - n0) / (t1 - t0)

    def seconds_left(self, now: float, max_steps: int, evals_left: int = 0) -> float | None:
        """The remaining steps at the window's pace with the other overhead per step so far,
        plus ``evals_left`` evaluations as long as the ones so far (none yet: not counted)."""
        if len(self._samples) < 2 or self._wall_started is None:
            return None
        (s0, t0, _), (s1, t1, _) = self._samples[0], self._samples[-1]
        done = self._last_step - self._start_step
        if s1 <= s0 or done <= 0:
            return None
        evals = sum(self._eval_s)
        other = max(0.0, (now - self._wall_started) - self._train_s - evals)
        per_step = (t1 - t0) / (s1 - s0) + other / done
        per_eval = evals / len(self._eval_s) if self._eval_s else 0.0
        return per_step * max(0, max_steps - self._last_step) + per_eval * max(0, evals_left)
