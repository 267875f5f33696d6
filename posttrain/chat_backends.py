"""Chat backends: one reply per conversation, from a local model or an OpenAI-compatible HTTP endpoint.

The MT-Bench answerer and judge (and the principle extraction) only need "reply to these conversations";
this module gives them one protocol, :class:`ChatBackend`, with two implementations:

- :class:`LocalChat` wraps a :mod:`posttrain.generation` sampler (``hf`` or ``vllm``): the conversations are
  rendered with the model's chat template (assistant turn opened) and sampled once each, in chunks.
- :class:`OpenAIChat` calls ``{base_url}/chat/completions`` of any OpenAI-compatible server (OpenAI,
  vLLM's ``vllm serve``, llama.cpp, TGI, ...) through the ``openai`` SDK (its HTTP client, timeouts and
  typed errors), ``concurrency`` requests at a time.

Protocol. ``chat(conversations, temperature=, max_new_tokens=, on_result=, desc=)`` takes OpenAI-style
message lists (``{"role": "system"|"user"|"assistant", "content": str}``, the last one a user turn) and
returns one reply per conversation in input order, ``None`` for a request that failed for good (only over
HTTP; the reason goes to stderr). ``on_result(index, text)`` is called in the calling thread as soon as a
reply is there (after each chunk for a local model, after each request over HTTP), so a caller can append
finished results to a file and an interrupted run loses nothing finished; failures do not call it.
Temperature 0 is greedy. ``model_id`` is the name written into output files.

Retries (HTTP). Connection errors, timeouts, HTTP 408/409/429/5xx and malformed replies are retried up to
``max_retries`` times, waiting ``backoff * 2**attempt`` seconds (at most :data:`MAX_WAIT`), or longer when
the server sends a numeric ``Retry-After``. The SDK's own retries are off (``max_retries=0``): this loop
decides, so a retry is reported on stderr and its wait ends as soon as the call is abandoned (Ctrl-C). Other 4xx (bad request, unknown model, wrong key) fail at once:
the request cannot succeed as sent. When every request of a call fails with 401, 403 or 404 the endpoint,
model name or key is wrong, and :class:`~posttrain.errors.UserError` says so instead of an empty result.

API keys come only from an environment variable (``api_key_env``, ``OPENAI_API_KEY`` by default), read at
each call and sent as ``Authorization: Bearer ...``; they are never an argument (a command line is visible
to every user of the machine and lands in shell history), never stored on the backend and never logged.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Protocol

from posttrain import generation, log
from posttrain.errors import UserError
from posttrain.generation import Sampling, render_prompts

BACKENDS = ("hf", "vllm", "openai")
MAX_WAIT = 60.0  # seconds: the longest wait before a retry, whatever the backoff or Retry-After says
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx; as the official OpenAI client does
SETUP_STATUSES = frozenset({401, 403, 404})  # wrong key, no access, wrong URL or model name

OnResult = Callable[[int, str], None]


class ChatBackend(Protocol):
    """Anything that replies to chat conversations (see the module docstring for the contract)."""

    model_id: str

    def chat(
        self,
        conversations: Sequence[list[dict]],
        *,
        temperature: float = 0.0,
        max_new_tokens: int = 1024,
        on_result: OnResult | None = None,
        desc: str = "chat",
        json_schema: dict | None = None,
    ) -> list[str | None]: ...


def _check_conversations(conversations: Sequence[list[dict]]) -> None:
    """A conversation to reply to ends with a user turn (a caller's bug otherwise, not the user's)."""
    for i, conv in enumerate(conversations):
        if not conv or not isinstance(conv[-1], dict) or conv[-1].get("role") != "user":
            raise ValueError(f"conversation {i}: the last message must be a user turn")


def _check_settings(temperature: float, max_new_tokens: int) -> None:
    if temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be at least 1, got {max_new_tokens}")


# ------------------------------------------------------------------------------------------ local model


class LocalChat:
    """A :mod:`posttrain.generation` sampler (``HFGenerator`` or ``VLLMGenerator``) as a chat backend.

    Conversations go to the generator ``batch_size`` at a time and ``on_result`` runs after each chunk:
    that is the resume granularity (a larger chunk keeps vLLM busier, a smaller one loses less when a run
    is killed). Every chunk is sampled with ``seed``, so a reply depends on the seed and its chunk only.
    """

    def __init__(
        self,
        generator,
        tokenizer,
        model_id: str,
        *,
        batch_size: int = 8,
        seed: int = 0,
        progress: bool = True,
    ):
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {batch_size}")
        self.generator, self.tokenizer, self.model_id = generator, tokenizer, model_id
        self.batch_size, self.seed, self.progress = batch_size, seed, progress

    def chat(
        self,
        conversations: Sequence[list[dict]],
        *,
        temperature: float = 0.0,
        max_new_tokens: int = 1024,
        on_result: OnResult | None = None,
        desc: str = "chat",
        json_schema: dict | None = None,
    ) -> list[str | None]:
        from tqdm.auto import tqdm

        _check_conversations(conversations)
        _check_settings(temperature, max_new_tokens)
        # top_p 1: the temperature alone shapes the distribution, as an API call with only a temperature
        settings = Sampling(
            samples=1,
            temperature=temperature,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            seed=self.seed,
            json_schema=json_schema,  # vLLM decodes against it; HF generate samples free text
        )
        replies: list[str | None] = [None] * len(conversations)
        starts = range(0, len(conversations), self.batch_size)
        for start in tqdm(starts, desc=desc, unit="chunk", disable=not self.progress):
            chunk = conversations[start : start + self.batch_size]
            generations = self.generator.generate(render_prompts(self.tokenizer, chunk), settings, desc=desc)
            for offset, gens in enumerate(generations):
                replies[start + offset] = gens[0].text
                if on_result is not None:
                    on_result(start + offset, gens[0].text)
        return replies


# ------------------------------------------------------------------------------------------------ HTTP


@dataclass
class _Failure:
    """Why a request failed; ``status`` is the HTTP status (None without a response)."""

    reason: str
    status: int | None = None
    retry: bool = False
    retry_after: float | None = None


def _retry_after(headers) -> float | None:
    """Seconds from ``Retry-After`` (numeric form only; an HTTP date is ignored) or ``retry-after-ms``."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        try:
            seconds = float(value) * scale if value is not None else None
        except ValueError:
            continue
        if seconds is not None and seconds >= 0:
            return seconds
    return None


def _error_text(body: bytes) -> str:
    """The server's error message: OpenAI's ``{"error": {"message": ...}}``, else the start of the body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if isinstance(error, str) and error:
            return error
    return text[:300] + ("..." if len(text) > 300 else "") if text else "no error text"


class OpenAIChat:
    """Replies from an OpenAI-compatible chat-completions endpoint, ``concurrency`` requests at a time.

    ``base_url`` is the API root (``https://api.openai.com/v1``, ``http://localhost:8000/v1``); ``model``
    the served model's name (the request's ``model`` field). ``timeout`` bounds each request in seconds;
    retries follow the module docstring. ``model_id`` (the name in output files) defaults to ``model``.
    The key is read from ``$api_key_env`` at each :meth:`chat`; without it no ``Authorization`` is sent.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        model_id: str | None = None,
        progress: bool = True,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"{base_url}: an OpenAI-compatible endpoint is an http:// or https:// URL")
        if not model:
            raise UserError(f"{base_url}: an HTTP endpoint needs the served model's name")
        if concurrency < 1:
            raise UserError(f"--concurrency must be at least 1, got {concurrency}")
        if not timeout > 0:
            raise UserError(f"--timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise UserError(f"--max-retries must be >= 0, got {max_retries}")
        if backoff < 0:
            raise UserError(f"backoff must be >= 0 seconds, got {backoff}")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model, self.model_id = model, model_id or model
        self.api_key_env, self.concurrency, self.timeout = api_key_env, concurrency, timeout
        self.max_retries, self.backoff, self.progress = max_retries, backoff, progress

    def chat(
        self,
        conversations: Sequence[list[dict]],
        *,
        temperature: float = 0.0,
        max_new_tokens: int = 1024,
        on_result: OnResult | None = None,
        desc: str = "chat",
        json_schema: dict | None = None,
    ) -> list[str | None]:
        from tqdm.auto import tqdm

        _check_conversations(conversations)
        _check_settings(temperature, max_new_tokens)
        if not conversations:
            return []
        import openai

        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key or "unused",  # the SDK insists on one (else it reads $OPENAI_API_KEY itself)
            timeout=self.timeout,
            max_retries=0,
            default_headers={"User-Agent": "posttrain"},
        )
        # without a key no Authorization header is sent at all
        no_auth = {} if key else {"extra_headers": {"Authorization": openai.Omit()}}
        create = functools.partial(client.chat.completions.with_raw_response.create, **no_auth)
        replies: list[str | None] = [None] * len(conversations)
        failures: list[_Failure] = []
        stop = threading.Event()  # set on the way out (Ctrl-C, an on_result error): workers end quickly
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations)))
        try:
            futures = {
                pool.submit(self._request, i, conv, temperature, max_new_tokens, create, stop): i
                for i, conv in enumerate(conversations)
            }
            with tqdm(total=len(futures), desc=desc, unit="request", disable=not self.progress) as bar:
                for future in as_completed(futures):
                    i, result = futures[future], future.result()
                    bar.update()
                    if isinstance(result, _Failure):
                        failures.append(result)
                        log.warning(f"{desc}: request {i} failed: {result.reason}")
                        continue
                    replies[i] = result
                    if on_result is not None:
                        on_result(i, result)
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            client.close()
        if len(failures) == len(conversations) and all(f.status in SETUP_STATUSES for f in failures):
            hint = f" (${self.api_key_env} is {'set' if key else 'not set'})" if self.api_key_env else ""
            raise UserError(
                f"{self.url}: every request failed ({failures[0].reason}); check the endpoint URL, "
                f"the model name '{self.model}' and the API key{hint}"
            )
        return replies

    def _request(
        self,
        index: int,
        conversation: list[dict],
        temperature: float,
        max_new_tokens: int,
        create: Callable,
        stop: threading.Event,
    ) -> str | _Failure:
        """One reply, retried per the module docstring; a :class:`_Failure` when it fails for good."""
        body = {
            "model": self.model,
            "messages": conversation,
            "temperature": temperature,
            "max_tokens": max_new_tokens,
        }
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                return _Failure("cancelled")
            result = self._attempt(create, body)
            if not isinstance(result, _Failure) or not result.retry:
                return result
            if attempt == self.max_retries:
                result.reason += f" (gave up after {attempt + 1} attempts)"
                return result
            wait = min(MAX_WAIT, self.backoff * 2**attempt)
            if result.retry_after is not None:
                wait = max(wait, min(MAX_WAIT, result.retry_after))
            log.warning(
                f"request {index}: {result.reason}; retry {attempt + 1}/{self.max_retries} in {wait:.1f}s"
            )
            stop.wait(wait)  # a sleep that ends early when the call is abandoned
        raise AssertionError("unreachable")

    def _attempt(self, create: Callable, body: dict) -> str | _Failure:
        """One request through the SDK (``create``: its raw-response chat completion); its typed errors
        become a :class:`_Failure` (retried or not)."""
        import openai

        try:
            response = create(**body)
        except openai.APIStatusError as exc:
            status = exc.status_code
            retry = status in RETRY_STATUSES or status >= 500
            text = _error_text(exc.response.content) if exc.response is not None else exc.message
            return _Failure(f"HTTP {status}: {text}", status, retry, _retry_after(exc.response.headers))
        except openai.APITimeoutError:
            return _Failure(f"no reply within {self.timeout:g}s", retry=True)
        except openai.APIConnectionError as exc:  # refused, unknown host, dropped mid-reply
            cause = exc.__cause__ or exc
            return _Failure(f"cannot connect to {self.url}: {cause}", retry=True)
        raw = response.http_response.content
        try:
            choice = json.loads(raw)["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return _Failure(f"malformed reply: {raw[:200]!r}", retry=True)
        if not isinstance(content, str):  # e.g. a tool call or a refusal: asking again will not help
            return _Failure(f"the reply has no text (finish_reason {choice.get('finish_reason')!r})")
        return content


# ---------------------------------------------------------------------------------------------- factory


def _is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def build_chat_backend(
    spec: str,
    *,
    backend: str | None = None,
    api_model: str | None = None,
    dtype: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    timeout: float = 120.0,
    max_retries: int = 5,
    progress: bool = True,
) -> ChatBackend:
    """A chat backend for ``spec``: an ``http(s)://`` API root gives :class:`OpenAIChat` over ``api_model``;
    anything else is a local model (hub id, local folder, ``embedded:...`` alias) loaded by
    :func:`posttrain.generation.build_generator` (``backend`` ``hf``/``vllm``, default: vLLM when installed
    with a GPU) and wrapped in :class:`LocalChat`, named after the spec's last path component.
    """
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if _is_url(spec):
        if backend not in (None, "openai"):
            raise UserError(f"{spec}: an HTTP endpoint is served by the 'openai' backend, not '{backend}'")
        if not api_model:
            raise UserError(f"{spec}: an HTTP endpoint needs the served model's name")
        return OpenAIChat(
            spec,
            api_model,
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
            progress=progress,
        )
    if backend == "openai":
        raise UserError(f"'{spec}': the openai backend needs an http:// or https:// endpoint URL")
    # the generator's own per-batch bar stays off: LocalChat shows one bar over the chunks
    generator, tokenizer = generation.build_generator(
        spec, backend=backend, dtype=dtype, batch_size=batch_size, seed=seed, progress=False
    )
    model_id = spec.removeprefix("embedded:").rstrip("/").split("/")[-1]
    return LocalChat(generator, tokenizer, model_id, batch_size=batch_size, seed=seed, progress=progress)
