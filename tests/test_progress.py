"""Progress lines in a log (no terminal): counts, rate and time left, at most every few seconds."""

from __future__ import annotations

from popdistill.progress import Progress


def test_lines_carry_the_counts_rate_and_time_left(monkeypatch):
    clock = iter([0.0, 2.0, 10.0, 11.0, 20.0])
    monkeypatch.setattr("popdistill.progress.time.perf_counter", lambda: next(clock))
    lines: list[str] = []
    bar = Progress(4, "teacher", "videos", lines.append, every=5.0, tty=False)  # t0 = 0
    bar.update(1, frames=48)   # t = 2: too soon
    bar.update(1, frames=96)   # t = 10: a line, 2 videos in 10 s
    bar.update(1, frames=144)  # t = 11: too soon after the last line
    bar.update(1, frames=192)  # t = 20: done, no line (the step prints its own summary)
    bar.close()
    assert lines == ["teacher: 2/4 videos, frames 96 (0.2 videos/s, about 10 s left)"]
