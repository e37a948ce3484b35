import pytest

from streamdit.sampling.prompts import PromptTrack, parse_schedule


def test_parse_schedule_forms():
    assert parse_schedule("a pig walking right on grass") == [(0.0, "a pig walking right on grass")]
    text = "0s: a pig walking right on grass\n3s: a cat walking right on grass\n\n# comment\n4.5 sec: a cat at night"
    assert parse_schedule(text) == [(0.0, "a pig walking right on grass"), (3.0, "a cat walking right on grass"),
                                    (4.5, "a cat at night")]
    assert parse_schedule("5: b\n1: a") == [(1.0, "a"), (5.0, "b")]


@pytest.mark.parametrize("text, message", [
    ("", "the prompt is empty"),
    ("0s: a pig\na cat", "line 2 ('a cat') has no time"),
    ("0s: a pig\n0s: a cat", "two prompts at the same time"),
    ("2s:   ", "has a time but no prompt"),
])
def test_parse_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule(text)


def test_track_weights_and_transitions():
    track = PromptTrack.from_text("0s: pig\n2s: cat", fps=10, transition_frames=10)
    assert track.weights(0) == (("pig", 1.0),)
    assert track.weights(19.9) == (("pig", 1.0),)
    assert track.weights(20) == (("pig", 1.0), ("cat", 0.0)) or track.weights(20) == (("pig", 1.0),)
    (p0, w0), (p1, w1) = track.weights(25)
    assert (p0, p1) == ("pig", "cat") and w0 == pytest.approx(0.5) and w1 == pytest.approx(0.5)
    assert track.weights(30) == (("cat", 1.0),)


def test_live_change_and_schedule_replace():
    track = PromptTrack.from_text("0s: pig\n10s: dog", fps=1)
    track.change("cat", clock=4)
    assert track.weights(3.9) == (("pig", 1.0),) and track.weights(4) == (("cat", 1.0),)
    assert track.weights(20) == (("cat", 1.0),)  # the live change dropped the scheduled dog
    track.replace(PromptTrack.from_text("0s: cat\n8s: duck", fps=1).events, clock=5)
    assert track.weights(5) == (("cat", 1.0),) and track.weights(8) == (("duck", 1.0),)
    track.replace(PromptTrack.from_text("0s: snow", fps=1).events, clock=9)  # changes what plays now
    assert track.weights(9) == (("snow", 1.0),) and track.weights(8.9)[0][0] == "duck"
    restored = PromptTrack.from_state(track.state_dict())
    assert restored.weights(9) == track.weights(9)
