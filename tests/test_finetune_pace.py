"""Issue 22, finding 7: a fine-tune's "Tokens per second" and "Time left" tell a steady trend.
``Pace`` measures them over a window of recent steps, counting only the steps' own time for the
rate and spreading evaluations and checkpoints over the steps for the time left."""

from __future__ import annotations

import random

from backend.training.pace import Pace


def _run(pace: Pace, steps: int, *, step_s: float, tokens: int, eval_every: int = 0,
         eval_s: float = 0.0, jitter: float = 0.0, seed: int = 0
         ) -> list[tuple[int, float | None, float | None]]:
    rnd = random.Random(seed)
    now, seen = 100.0, 0
    pace.begin(now, 0, 0)
    out = []
    for step in range(1, steps + 1):
        pace.step_begin(now)
        now += step_s * (1 + rnd.uniform(-jitter, jitter))
        seen += tokens
        pace.step_end(now, step, seen)
        evals_left = steps // eval_every - (step - 1) // eval_every if eval_every else 0
        out.append((step, pace.tokens_per_s(), pace.seconds_left(now, steps, evals_left)))
        if eval_every and step % eval_every == 0:  # reported before the evaluation, as the
            now += eval_s  # trainer logs its loss before it evaluates: not training time
            pace.evaluated(eval_s)
    return out


def test_rate_counts_training_time_only() -> None:
    points = _run(Pace(), 40, step_s=0.5, tokens=1000, eval_every=10, eval_s=20.0)
    for _step, rate, _left in points:
        assert rate is not None and abs(rate - 2000.0) < 1e-6  # evaluations do not dent it


def _old_figure(steps: int, step_s: float, eval_every: int, eval_s: float, jitter: float,
                seed: int) -> list[float]:
    """What the callback reported before: time since the start over steps done, at the
    training log and again at the evaluation log of the same step."""
    rnd = random.Random(seed)
    now, out = 0.0, []
    for step in range(1, steps + 1):
        now += step_s * (1 + rnd.uniform(-jitter, jitter))
        out.append(now / step * (steps - step))
        if step % eval_every == 0:
            now += eval_s
            out.append(now / step * (steps - step))
    return out


def _variation(values: list[float]) -> float:
    """How far the line travels, over how far it falls: 1.0 for a line that only falls."""
    travel = sum(abs(b - a) for a, b in zip(values, values[1:], strict=False))
    return travel / max(1e-9, values[0] - values[-1])


def test_time_left_is_truthful_and_falls_steadily() -> None:
    steps, step_s, eval_every, eval_s, jitter = 200, 0.2, 20, 4.0, 0.5
    points = _run(Pace(), steps, step_s=step_s, tokens=64, eval_every=eval_every,
                  eval_s=eval_s, jitter=jitter, seed=3)
    lefts = [left for _s, _r, left in points]
    assert all(v is not None for v in lefts)
    assert lefts[-1] == eval_s  # the last step's loss is logged before its evaluation runs
    # halfway: the steps left at their pace plus the evaluations left at their length (six:
    # the one at step 100 runs after the report)
    truth = 100 * step_s + 6 * eval_s
    assert abs(lefts[99] - truth) / truth < 0.1  # type: ignore[operator]
    # once the first evaluation has been timed the line falls, with little back and forth
    new = [v for v in lefts[eval_every:] if v is not None]
    old = _old_figure(steps, step_s, eval_every, eval_s, jitter, seed=3)[eval_every + 1:]
    assert _variation(new) < 1.3
    assert _variation(old) > 2 * _variation(new)


def test_resume_measures_from_the_resumed_step() -> None:
    pace = Pace()
    pace.begin(0.0, 50, 5000)
    assert pace.tokens_per_s() is None and pace.seconds_left(0.0, 100) is None
    pace.step_begin(1.0)
    pace.step_end(2.0, 51, 5100)
    assert pace.tokens_per_s() == 100.0
    assert pace.seconds_left(2.0, 100) == 49 * 2.0  # one step took 1 s plus 1 s outside steps
