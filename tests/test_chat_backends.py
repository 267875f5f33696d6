"""Chat backends: OpenAIChat against a real HTTP server (tests/openai_stub.py) — order, retries, backoff,
timeouts, concurrency, keys, setup errors — LocalChat over the tiny model, the stub serving that model,
and build_chat_backend's dispatch."""

from __future__ import annotations

import threading
import time

import pytest
from openai_stub import OpenAIStub, StubHTTPError, echo, responder_from_backend

from posttrain.chat_backends import BACKENDS, LocalChat, OpenAIChat, build_chat_backend
from posttrain.errors import UserError
from posttrain.generation import Sampling, render_prompts

KEY_ENV = "POSTTRAIN_TEST_CHAT_KEY"


def ask(text: str, system: str | None = None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def client(stub: OpenAIStub, **kwargs) -> OpenAIChat:
    """Fast retries, no progress bar, a key variable nobody sets by accident."""
    kwargs = {"backoff": 0.01, "progress": False, "api_key_env": KEY_ENV, **kwargs}
    return OpenAIChat(stub.url, kwargs.pop("model", "stub-model"), **kwargs)


# ------------------------------------------------------------------------------------------------ HTTP


def test_replies_in_input_order_and_request_format():
    convs = [ask(f"q{i}", system="be brief") for i in range(6)]
    seen, threads = [], set()

    def on_result(i, text):
        seen.append((i, text))
        threads.add(threading.get_ident())

    def responder(messages):  # the first question is answered last
        if messages[-1]["content"] == "q0":
            time.sleep(0.3)
        return echo(messages)

    with OpenAIStub(responder=responder) as stub:
        chat = OpenAIChat(stub.url + "/", "stub-model", concurrency=6, progress=False, api_key_env=KEY_ENV)
        replies = chat.chat(convs, temperature=0.7, max_new_tokens=33, on_result=on_result)
    assert replies == [f"echo: q{i}" for i in range(6)]
    assert sorted(seen) == [(i, f"echo: q{i}") for i in range(6)]
    assert seen[-1] == (0, "echo: q0")  # reported as they finished, not at the end in order
    assert threads == {threading.get_ident()}  # on_result runs in the calling thread
    assert chat.model_id == "stub-model"
    assert {r["path"] for r in stub.requests} == {"/v1/chat/completions"}
    bodies = sorted((r["body"] for r in stub.requests), key=lambda b: b["messages"][-1]["content"])
    assert bodies[0] == {"model": "stub-model", "messages": convs[0], "temperature": 0.7, "max_tokens": 33}


def test_empty_input_sends_nothing():
    with OpenAIStub() as stub:
        assert client(stub).chat([]) == []
    assert stub.requests == []


def test_server_errors_are_retried(capsys):
    with OpenAIStub(fail_first=2) as stub:
        assert client(stub).chat([ask("hi")]) == ["echo: hi"]
    assert len(stub.requests) == 3
    err = capsys.readouterr().err
    assert "HTTP 500: stub failure 1 of 2; retry 1/5" in err and "retry 2/5" in err


def test_malformed_reply_is_retried():
    with OpenAIStub(fail_first=1, fail_status=200, fail_body="<html>proxy page</html>") as stub:
        assert client(stub).chat([ask("hi")]) == ["echo: hi"]
    assert len(stub.requests) == 2


def test_429_retry_after_is_honored():
    with OpenAIStub(fail_first=1, fail_status=429, retry_after=0.5) as stub:
        start = time.monotonic()
        assert client(stub, backoff=0.01).chat([ask("hi")]) == ["echo: hi"]
        elapsed = time.monotonic() - start
    assert len(stub.requests) == 2
    assert elapsed >= 0.5  # the server's wait, not the 0.01 s backoff


def test_backoff_grows_exponentially():
    with OpenAIStub(fail_first=3, fail_status=503) as stub:
        start = time.monotonic()
        assert client(stub, backoff=0.1).chat([ask("hi")]) == ["echo: hi"]
        elapsed = time.monotonic() - start
    assert elapsed >= 0.1 + 0.2 + 0.4


def test_gives_up_after_max_retries(capsys):
    def responder(messages):
        if messages[-1]["content"] == "doomed":
            raise StubHTTPError(503, "overloaded")
        return "fine"

    seen = []
    with OpenAIStub(responder=responder) as stub:
        replies = client(stub, max_retries=2).chat(
            [ask("a"), ask("doomed"), ask("b")], on_result=lambda i, t: seen.append((i, t))
        )
    assert replies == ["fine", None, "fine"]
    assert sorted(seen) == [(0, "fine"), (2, "fine")]  # no callback for the failure
    doomed = [r for r in stub.requests if r["body"]["messages"][-1]["content"] == "doomed"]
    assert len(doomed) == 3  # the first try and 2 retries
    err = capsys.readouterr().err
    assert "request 1 failed: HTTP 503: overloaded (gave up after 3 attempts)" in err


def test_client_errors_are_not_retried(capsys):
    def responder(messages):
        if messages[-1]["content"] == "huge":
            raise StubHTTPError(400, "maximum context length is 8192 tokens")
        return "fine"

    with OpenAIStub(responder=responder) as stub:
        assert client(stub).chat([ask("huge"), ask("small")]) == [None, "fine"]
    assert len(stub.requests) == 2
    assert "request 0 failed: HTTP 400: maximum context length is 8192 tokens" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("stub_kwargs", "path", "expected"),
    [
        ({"model": "served"}, "/v1", "HTTP 404: The model 'stub-model' does not exist"),
        ({}, "/wrong", "HTTP 404: no route /wrong/chat/completions"),
        ({"require_key": "sk-right"}, "/v1", "HTTP 401: Incorrect API key provided"),
    ],
)
def test_every_request_failing_with_a_setup_error_is_a_user_error(stub_kwargs, path, expected, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-secret")
    with OpenAIStub(**stub_kwargs) as stub:
        chat = OpenAIChat(
            stub.url.removesuffix("/v1") + path, "stub-model", api_key_env=KEY_ENV, progress=False
        )
        with pytest.raises(UserError, match="every request failed") as info:
            chat.chat([ask("a"), ask("b"), ask("c")])
    assert len(stub.requests) == 3  # no retries
    assert expected in str(info.value) and f"${KEY_ENV} is set" in str(info.value)
    assert "sk-wrong-secret" not in str(info.value)


def test_one_404_among_successes_is_not_a_user_error():
    def responder(messages):
        if messages[-1]["content"] == "x":
            raise StubHTTPError(404, "gone")
        return "fine"

    with OpenAIStub(responder=responder) as stub:
        assert client(stub).chat([ask("x"), ask("y")]) == [None, "fine"]


def test_bearer_key_from_the_environment_only(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    with OpenAIStub(require_key="sk-test-123") as stub:
        assert client(stub).chat([ask("hi")]) == ["echo: hi"]
    # header names are case-insensitive (the openai SDK's httpx sends them in lower case)
    headers = {name.lower(): value for name, value in stub.requests[0]["headers"].items()}
    assert headers["authorization"] == "Bearer sk-test-123"

    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-be-sent")  # another variable is never read
    with OpenAIStub() as stub:
        assert client(stub).chat([ask("hi")]) == ["echo: hi"]
    assert "authorization" not in {name.lower() for name in stub.requests[0]["headers"]}
    with pytest.raises(TypeError):
        OpenAIChat(stub.url, "m", api_key="sk-nope")  # type: ignore[call-arg]


def test_at_most_concurrency_requests_in_flight():
    # long enough that requests overlap even when a loaded machine starts the client threads slowly
    with OpenAIStub(delay=0.6) as stub:
        replies = client(stub, concurrency=3).chat([ask(str(i)) for i in range(9)])
    assert replies == [f"echo: {i}" for i in range(9)]
    assert 1 < stub.max_in_flight <= 3


def test_timeout_triggers_a_retry(capsys):
    with OpenAIStub(delay=lambda n: 6.0 if n == 0 else 0.0) as stub:
        start = time.monotonic()
        assert client(stub, timeout=0.5).chat([ask("hi")]) == ["echo: hi"]
        elapsed = time.monotonic() - start
    assert len(stub.requests) == 2
    assert elapsed < 5.0  # did not wait for the slow first answer
    assert "no reply within 0.5s; retry 1/5" in capsys.readouterr().err


def test_unreachable_server_fails_after_retries(capsys):
    with OpenAIStub() as stub:
        url = stub.url
    chat = OpenAIChat(url, "m", max_retries=1, backoff=0.01, progress=False)
    assert chat.chat([ask("hi")]) == [None]  # a connection problem, not a setup error: no UserError
    assert "cannot connect to" in capsys.readouterr().err


def test_on_result_error_stops_the_call():
    """A caller's callback failing (e.g. disk full) propagates, and the remaining requests are dropped."""

    def on_result(i, text):
        raise OSError("disk full")

    with OpenAIStub(delay=0.05) as stub:
        with pytest.raises(OSError, match="disk full"):
            client(stub, concurrency=1).chat([ask(str(i)) for i in range(20)], on_result=on_result)
        time.sleep(0.2)
    assert len(stub.requests) < 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "localhost:8000/v1"}, "http:// or https://"),
        ({"model": ""}, "served model's name"),
        ({"concurrency": 0}, "--concurrency must be at least 1"),
        ({"timeout": 0}, "--timeout must be > 0"),
        ({"max_retries": -1}, "--max-retries must be >= 0"),
        ({"backoff": -1}, "backoff must be >= 0"),
    ],
)
def test_openai_chat_argument_errors(kwargs, message):
    args = {"base_url": "http://127.0.0.1:9/v1", "model": "m", **kwargs}
    with pytest.raises(UserError, match=message):
        OpenAIChat(args.pop("base_url"), args.pop("model"), **args)


def test_conversation_must_end_with_a_user_turn():
    chat = OpenAIChat("http://127.0.0.1:9/v1", "m", progress=False)
    with pytest.raises(ValueError, match="conversation 1: the last message must be a user turn"):
        chat.chat([ask("a"), [*ask("b"), {"role": "assistant", "content": "c"}]])
    with pytest.raises(UserError, match="temperature"):
        chat.chat([ask("a")], temperature=-1)


# ----------------------------------------------------------------------------------------- local model


CONVERSATIONS = [
    ask("What is 2 plus 3?"),
    ask("Evaluate the response principle.", system="You are a judge."),
    ask("Yes or No?"),
    [*ask("Hello"), {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Count to 3."}],
    ask("Only answer Yes or No."),
]


@pytest.fixture(scope="module")
def tiny_generator(tiny_model_dir):
    """HFGenerator over the tiny model, one sequence per batch: no padding, so the greedy replies do not
    depend on how prompts are grouped."""
    from posttrain.generation import build_generator

    return build_generator(str(tiny_model_dir), backend="hf", batch_size=1, progress=False)


def test_local_chat_greedy_matches_the_generator_and_reports_per_chunk(tiny_generator):
    generator, tokenizer = tiny_generator
    direct = generator.generate(render_prompts(tokenizer, CONVERSATIONS), Sampling(max_new_tokens=12))
    expected = [gens[0].text for gens in direct]
    assert any(expected) and len(set(expected)) > 1  # a test over empty or identical replies proves little

    events = []

    class Spy:
        def generate(self, prompt_ids, settings, desc=""):
            events.append(("generate", len(prompt_ids), settings.samples, settings.top_p, desc))
            return generator.generate(prompt_ids, settings, desc=desc)

    chat = LocalChat(Spy(), tokenizer, "tiny", batch_size=2, progress=False)
    replies = chat.chat(
        CONVERSATIONS, max_new_tokens=12, desc="answers", on_result=lambda i, t: events.append((i, t))
    )
    assert replies == expected
    call = ("generate", 2, 1, 1.0, "answers")
    assert events == [
        call,
        (0, expected[0]),
        (1, expected[1]),
        call,
        (2, expected[2]),
        (3, expected[3]),
        ("generate", 1, 1, 1.0, "answers"),
        (4, expected[4]),
    ]


def test_local_chat_sampling_follows_the_seed(tiny_generator):
    generator, tokenizer = tiny_generator

    def sample(seed):
        chat = LocalChat(generator, tokenizer, "tiny", seed=seed, progress=False)
        return chat.chat(CONVERSATIONS[:2], temperature=1.0, max_new_tokens=12)

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_stub_serving_the_tiny_model_matches_local_chat(tiny_generator):
    """An in-process OpenAI-compatible server serving a small HF model, through OpenAIChat."""
    generator, tokenizer = tiny_generator
    local = LocalChat(generator, tokenizer, "tiny", progress=False)
    expected = local.chat(CONVERSATIONS, max_new_tokens=10)
    with OpenAIStub(responder=responder_from_backend(local), model="tiny") as stub:
        served = client(stub, model="tiny", concurrency=3).chat(CONVERSATIONS, max_new_tokens=10)
    assert served == expected
    assert {r["body"]["max_tokens"] for r in stub.requests} == {10}


def test_local_chat_batch_size_must_be_positive(tiny_generator):
    with pytest.raises(UserError, match="--batch-size must be at least 1"):
        LocalChat(*tiny_generator, "tiny", batch_size=0)


# --------------------------------------------------------------------------------------------- factory


def test_build_chat_backend_http():
    chat = build_chat_backend(
        "https://api.example.com/v1/", backend="openai", api_model="gpt-4o", concurrency=3, timeout=9
    )
    assert isinstance(chat, OpenAIChat)
    assert (chat.url, chat.model, chat.model_id) == (
        "https://api.example.com/v1/chat/completions",
        "gpt-4o",
        "gpt-4o",
    )
    assert (chat.concurrency, chat.timeout, chat.api_key_env) == (3, 9, "OPENAI_API_KEY")
    assert isinstance(build_chat_backend("http://localhost:8000/v1", api_model="m"), OpenAIChat)


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("http://localhost:8000/v1", {}, "needs the served model's name"),
        ("http://localhost:8000/v1", {"backend": "hf", "api_model": "m"}, "served by the 'openai' backend"),
        ("some/model", {"backend": "openai"}, "needs an http:// or https:// endpoint URL"),
        ("some/model", {"backend": "tgi"}, "--backend must be one of hf, vllm, openai"),
        ("http://localhost:8000/v1", {"api_model": "m", "concurrency": 0}, "--concurrency"),
    ],
)
def test_build_chat_backend_errors(spec, kwargs, message):
    with pytest.raises(UserError, match=message):
        build_chat_backend(spec, **kwargs)


def test_build_chat_backend_local(monkeypatch, tiny_model_dir):
    import posttrain.generation

    calls = []
    real = posttrain.generation.build_generator

    def spy(model, **kwargs):
        calls.append((model, kwargs))
        return real(model, **kwargs)

    monkeypatch.setattr(posttrain.generation, "build_generator", spy)
    chat = build_chat_backend(str(tiny_model_dir) + "/", backend="hf", batch_size=3, seed=5, progress=False)
    assert isinstance(chat, LocalChat)
    assert chat.model_id == tiny_model_dir.name
    assert (chat.batch_size, chat.seed, chat.progress) == (3, 5, False)
    assert calls == [
        (
            str(tiny_model_dir) + "/",
            {"backend": "hf", "dtype": "auto", "batch_size": 3, "seed": 5, "progress": False},
        )
    ]
    assert chat.chat([ask("hi")], max_new_tokens=4)[0] is not None

    # an embedded alias is named without its prefix (the generator is a stand-in: nothing to download)
    monkeypatch.setattr(posttrain.generation, "build_generator", lambda model, **kw: (object(), object()))
    assert build_chat_backend("embedded:smollm2-135m-instruct").model_id == "smollm2-135m-instruct"
    assert BACKENDS == ("hf", "vllm", "openai")
