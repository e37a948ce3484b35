import io

import pytest

from streamdit.io.progress import Progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_log_mode_prints_plain_lines_at_10_percent_steps():
    out, clock = io.StringIO(), Clock()
    with Progress(total=40, desc="gen", file=out, clock=clock, disable=False) as p:
        for _ in range(40):
            clock.t += 0.25
            p.update()
            p.set_postfix(loss=0.123456, step="a")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 11  # first update + one per new 10 %; the 100 % line is not repeated on close
    assert lines[0].startswith("gen:   2%|")
    assert lines[-1] == "gen: 100%|####################| 40/40 frame [00:10<00:00, 4.00 frame/s, loss=0.1235, step=a]"
    assert "  20%|####                | 8/40 frame [00:02<00:08, 4.00 frame/s, loss=0.1235, step=a]" in lines[2]


def test_log_mode_time_interval_without_total():
    out, clock = io.StringIO(), Clock()
    p = Progress(desc="train", unit="step", file=out, clock=clock, disable=False, log_interval=5.0)
    for _ in range(100):
        clock.t += 0.5
        p.update()
    p.close()
    p.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert 9 <= len(lines) <= 12  # about one line per 5 s over 50 s
    assert lines[-1] == "train: 100 step [00:50, 2.00 step/s]"


def test_rate_eta_and_slow_units():
    clock = Clock()
    p = Progress(total=10, file=io.StringIO(), clock=clock, disable=False)
    assert p.rate is None and "? frame/s" in p.format() and "<?" in p.format()
    clock.t += 6.0
    p.update(3)
    assert p.rate == pytest.approx(0.5)
    assert "3/10 frame [00:06<00:14, 2.00 s/frame]" in p.format()


def test_tty_mode_redraws_in_place_at_most_every_min_interval():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out, clock = Tty(), Clock()
    p = Progress(total=100, file=out, clock=clock, disable=False)
    for _ in range(100):
        clock.t += 0.01
        p.update()
    p.write("hello")
    p.close()
    text = out.getvalue()
    assert text.endswith("\n") and "hello\n" in text
    assert 10 <= text.count("\r") <= 16  # ~1 s at <= 10 redraws/s, plus the message and the close
    assert "100/100 frame" in text.splitlines()[-1]


def test_disable(monkeypatch):
    out = io.StringIO()
    with Progress(total=5, file=out, disable=True) as p:
        p.update(5)
        p.set_postfix(fps=3.0)
    assert out.getvalue() == "" and p.n == 5
    monkeypatch.setenv("STREAMDIT_NO_PROGRESS", "1")
    with Progress(total=5, file=out) as p:
        p.update(5)
    assert out.getvalue() == ""
    monkeypatch.setenv("STREAMDIT_NO_PROGRESS", "0")
    with Progress(total=5, file=out) as p:
        p.update(5)
    assert "5/5 frame" in out.getvalue()
