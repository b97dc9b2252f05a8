"""Unit-to-token mapping and the window plan of long causal streams."""

from __future__ import annotations

import numpy as np
import pytest

from brainalign.errors import ConfigError, DataError
from brainalign.models.random_models import build_random_model
from brainalign.models.streams import TokenStream, join_units, plan_windows, tokenize_stream

TEXTS = ["If", "you", "don't,", "café", "1,234", "(Bradford)!", "ok"]


@pytest.fixture(scope="module", params=["gpt2", "llama", "t5"])
def tokenizer(request):
    config = {"gpt2": {"n_layer": 1}, "llama": {"num_hidden_layers": 1}, "t5": {"num_layers": 1}}[request.param]
    return build_random_model(request.param, 0, config)[1]


def test_join_units_spans():
    text, spans = join_units(["a", "bc", "d"])
    assert text == "a bc d"
    assert [text[s:e] for s, e in spans] == ["a", "bc", "d"]


def test_units_own_the_tokens_of_their_prefix(tokenizer):
    stream = tokenize_stream(tokenizer, TEXTS, [str(i) for i in range(len(TEXTS))])
    assert stream.first[0] == 0 and np.all(stream.first[1:] == stream.last[:-1] + 1)
    for unit in range(len(TEXTS)):
        alone = tokenizer(" ".join(TEXTS[: unit + 1]), add_special_tokens=False)["input_ids"]
        assert stream.body[: stream.last[unit] + 1].tolist() == alone
    assert (stream.last - stream.first).max() > 0  # some unit has several tokens


def test_special_tokens_go_to_head_and_tail(tokenizer):
    stream = tokenize_stream(tokenizer, TEXTS, [str(i) for i in range(len(TEXTS))])
    full = tokenizer(" ".join(TEXTS))["input_ids"]
    assert np.concatenate([stream.head, stream.body, stream.tail]).tolist() == full
    assert tokenizer.decode(stream.body).replace(" ", "") == "".join(TEXTS).replace(" ", "")


def test_unit_without_own_token_is_refused(tokenizer):
    # Every tokenizer here splits on whitespace, so a unit made only of whitespace shares no token.
    with pytest.raises(DataError, match="'u1'"):
        tokenize_stream(tokenizer, ["word", "", "next"], ["u0", "u1", "u2"])


def _stream(lengths: list[int], head: int = 1) -> TokenStream:
    last = np.cumsum(lengths) - 1
    first = np.concatenate([[0], last[:-1] + 1])
    return TokenStream(np.zeros(head, int), np.arange(last[-1] + 1), np.zeros(0, int), first, last)


@pytest.mark.parametrize("min_context", [1, 5, 12])
def test_windows_cover_every_unit_once_with_enough_context(min_context):
    rng = np.random.default_rng(0)
    stream = _stream(list(rng.integers(1, 5, size=200)))
    windows = plan_windows(stream, max_length=32, min_context_tokens=min_context)
    units = np.concatenate([w.units for w in windows])
    np.testing.assert_array_equal(units, np.arange(len(stream.first)))
    for window in windows:
        assert 1 + window.stop - window.start <= 32
        assert np.all(stream.last[window.units] < window.stop)
        context = stream.first[window.units] - window.start
        assert np.all((context >= min_context) | (window.start == 0))
    assert len(windows) > 1


def test_short_stream_is_one_window():
    stream = _stream([3, 2, 4])
    assert [(w.start, w.stop) for w in plan_windows(stream, 64, 10)] == [(0, 9)]


def test_unit_too_long_for_window_is_refused():
    stream = _stream([3, 30, 40, 2])
    with pytest.raises(ConfigError, match="min_context_tokens"):
        plan_windows(stream, max_length=32, min_context_tokens=4)


def test_template_policy_wraps_the_stream():
    tokenizer = build_random_model("llama", 0, {"num_hidden_layers": 1})[1]
    tokenizer.chat_template = "{% for m in messages %}<s>user: {{ m['content'] }}</s>{% endfor %}"
    raw = tokenize_stream(tokenizer, TEXTS, [str(i) for i in range(len(TEXTS))], "raw")
    wrapped = tokenize_stream(tokenizer, TEXTS, [str(i) for i in range(len(TEXTS))], "template")
    assert tokenizer.decode(wrapped.head).startswith("<s>user:") and tokenizer.decode(wrapped.tail) == "</s>"
    assert np.array_equal(wrapped.last - wrapped.first, raw.last - raw.first)


def test_template_policy_needs_a_chat_template():
    tokenizer = build_random_model("gpt2", 0, {"n_layer": 1})[1]
    with pytest.raises(ConfigError, match="chat template"):
        tokenize_stream(tokenizer, TEXTS, [str(i) for i in range(len(TEXTS))], "template")
