"""Polite HTTP for the scraper: robots.txt, one request at a time per host, bounded retries.

:class:`RobotsRules` reads each host's ``robots.txt`` once per run; :class:`HostPacer` lets one
request at a time reach a host, ``delay`` seconds after the previous one ended; :func:`download`
fetches a URL with conditional headers, retries timeouts, dropped connections, 5xx and 429
with exponential backoff (honouring a short ``Retry-After``), and streams the body up to a size
limit. Redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each hop paced and checked
(:class:`RedirectCheck`): the target's ``robots.txt``, and no private, loopback or link-local
address the camera list does not name (a public camera must not be able to point the scraper at
the machine's own network). What happens to the body is :mod:`tcv_helpers.data.scrape`'s
business.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import urllib.robotparser
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

#: Longest ``Retry-After`` (seconds) that is waited for; a longer one ends the fetch.
MAX_RETRY_AFTER = 30.0
#: A whole download may take this many times ``timeout`` (``timeout`` bounds each read).
DOWNLOAD_TIME_FACTOR = 6
#: Largest ``robots.txt`` read (bytes); the rest is ignored, as search engines do.
MAX_ROBOTS_BYTES = 512_000
#: Bytes read from the network at a time.
CHUNK_BYTES = 65_536
#: Redirects followed for one fetch; one more is an ``http_error``.
MAX_REDIRECTS = 5
#: The HTTP statuses that redirect.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def utc_now() -> datetime:
    """The current time in UTC (timezone-aware)."""
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------------------------
# Politeness: per-host pacing and robots.txt
# --------------------------------------------------------------------------------------------


class HostPacer:
    """One request at a time per host, ``delay`` seconds after the previous one ended.

    Holding a host's slot for the whole request (body included) means a slow response slows
    down only its own host, and the publisher never sees two of our requests at once.
    """

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._lock = threading.Lock()
        self._hosts: dict[str, threading.Lock] = {}
        self._free_at: dict[str, float] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Waits for the host's turn, then holds it while the caller's request runs."""
        with self._lock:
            host_lock = self._hosts.setdefault(host, threading.Lock())
        with host_lock:
            pause = self._free_at.get(host, 0.0) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                yield
            finally:
                self._free_at[host] = time.monotonic() + self._delay


@dataclass
class FetchOptions:
    """How :func:`download` and :class:`RobotsRules` fetch.

    Attributes:
        user_agent: The User-Agent header (robots.txt rules are matched against it too).
        timeout: Seconds to wait for a connection and for each read.
        retries: Extra tries after a timeout, connection error, 5xx or 429.
        backoff: Seconds before the first retry; doubled for each further retry.
        max_bytes: Largest response body read; a larger one is ``too_large``.
    """

    user_agent: str
    timeout: float
    retries: int
    backoff: float
    max_bytes: int


class RobotsRules:
    """robots.txt per host, fetched once per run with the scraper's session and User-Agent.

    Its redirects are followed by hand too (at most :data:`MAX_REDIRECTS`, RFC 9309), each hop
    paced and refused when it leads to an address the camera list does not name (``named``,
    see :class:`RedirectCheck`): such a robots.txt counts as unreachable, so nothing is fetched.
    """

    def __init__(
        self,
        session: requests.Session,
        pacer: HostPacer,
        options: FetchOptions,
        named: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self._session = session
        self._pacer = pacer
        self._options = options
        self._named = frozenset(item.lower() for item in named)
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._parsers: dict[str, urllib.robotparser.RobotFileParser] = {}

    def allowed(self, url: str) -> tuple[bool, str]:
        """Whether ``url`` may be fetched, and why not when it may not."""
        parts = urlsplit(url)
        root = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            host_lock = self._host_locks.setdefault(root, threading.Lock())
        with host_lock:
            if root not in self._parsers:
                parser, unreachable = self._fetch(root)
                if unreachable:  # not kept: asked again before the next fetch from that host
                    return False, (
                        f"{root}/robots.txt could not be reached ({unreachable}): not fetching "
                        "until it can be read (RFC 9309)"
                    )
                self._parsers[root] = parser
        parser = self._parsers[root]
        if parser.can_fetch(self._options.user_agent, url):
            return True, ""
        if parser.disallow_all:
            return False, f"{root}/robots.txt could not be read (server error): not fetching"
        return False, f"{root}/robots.txt disallows this URL for our User-Agent"

    def _fetch(self, root: str) -> tuple[urllib.robotparser.RobotFileParser, str]:
        """The host's rules, and why robots.txt could not be reached ("" when it answered)."""
        parser = urllib.robotparser.RobotFileParser(f"{root}/robots.txt")
        url = f"{root}/robots.txt"
        try:
            for _ in range(MAX_REDIRECTS + 1):
                with (
                    self._pacer.slot(urlsplit(url).netloc.lower()),
                    self._session.get(
                        url,
                        headers={"User-Agent": self._options.user_agent},
                        timeout=self._options.timeout,
                        stream=True,
                        allow_redirects=False,
                    ) as response,
                ):
                    location = response.headers.get("Location", "")
                    if response.status_code not in REDIRECT_STATUSES or not location:
                        self._read(parser, response)
                        return parser, ""
                url = urljoin(url, location)
                refused = _address_refusal(url, self._named)
                if refused:
                    parser.disallow_all = True
                    return parser, refused
        except requests.exceptions.RequestException as exc:
            # Unreachable (timeout, reset, DNS): RFC 9309 says assume everything is disallowed.
            parser.disallow_all = True
            return parser, type(exc).__name__
        parser.allow_all = True  # more redirects than RFC 9309 asks to follow: no rules found
        return parser, ""

    @staticmethod
    def _read(parser: urllib.robotparser.RobotFileParser, response: requests.Response) -> None:
        """Sets ``parser`` from a final (not redirecting) robots.txt response."""
        status = response.status_code
        if status >= 500:
            parser.disallow_all = True
        elif not 200 <= status < 300:
            parser.allow_all = True  # 4xx: no rules published
        else:
            body = b""
            for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
                body += chunk
                if len(body) >= MAX_ROBOTS_BYTES:
                    break
            parser.parse(body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace").splitlines())


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


@dataclass
class FetchResult:
    """Result of one fetch (retries included): an outcome, or a body to look at.

    Attributes:
        outcome: One of the scraper's outcomes (``not_modified``, ``http_error``, ``timeout``,
            ...), or None when a 2xx body is in ``body``.
        status: The HTTP status (None: no response).
        body: The body of a 2xx response.
        nbytes: The body's size, or the size declared or read so far for ``too_large``.
        etag: The response's ``ETag``.
        last_modified: The response's ``Last-Modified``.
        error: What went wrong, in words.
        url: The URL the answer came from (after redirects).
        location: A redirect's target (``outcome`` ``redirect``, inside :func:`download` only).
    """

    outcome: str | None  # None: a 2xx body is in ``body``
    status: int | None = None
    body: bytes | None = None
    nbytes: int | None = None
    etag: str = ""
    last_modified: str = ""
    error: str = ""
    url: str = ""
    location: str = ""


def _retry_after(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - utc_now()).total_seconds())


def _is_read_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout during streaming as a ConnectionError: find it."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return True
        stack.extend([*item.args, item.__cause__, item.__context__])
    return False


def _read_body(response: requests.Response, options: FetchOptions, started: float) -> FetchResult:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > options.max_bytes:
        return FetchResult(
            "too_large",
            response.status_code,
            nbytes=int(declared),
            error=f"Content-Length {int(declared):,} is more than max_bytes={options.max_bytes:,}",
        )
    deadline = started + options.timeout * DOWNLOAD_TIME_FACTOR
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
        chunks.append(chunk)
        size += len(chunk)
        if size > options.max_bytes:
            return FetchResult(
                "too_large",
                response.status_code,
                nbytes=size,
                error=f"stopped after {size:,} bytes: more than max_bytes={options.max_bytes:,}",
            )
        if time.monotonic() > deadline:
            return FetchResult(
                "timeout",
                response.status_code,
                nbytes=size,
                error=f"download not finished within {options.timeout * DOWNLOAD_TIME_FACTOR:g} s",
            )
    body = b"".join(chunks)
    return FetchResult(
        None,
        response.status_code,
        body=body,
        nbytes=len(body),
        etag=response.headers.get("ETag", ""),
        last_modified=response.headers.get("Last-Modified", ""),
    )


def _request_once(
    session: requests.Session, url: str, headers: dict[str, str], options: FetchOptions
) -> tuple[FetchResult, float | None]:
    """One HTTP request; returns the result and the server's ``Retry-After`` (seconds)."""
    started = time.monotonic()
    try:
        with session.get(
            url, headers=headers, timeout=options.timeout, stream=True, allow_redirects=False
        ) as response:
            status = response.status_code
            location = response.headers.get("Location", "")
            if status in REDIRECT_STATUSES and location:
                return FetchResult("redirect", status, location=urljoin(url, location)), None
            if status == 304:
                fetch = FetchResult(
                    "not_modified",
                    status,
                    nbytes=0,
                    etag=response.headers.get("ETag", ""),
                    last_modified=response.headers.get("Last-Modified", ""),
                )
                return fetch, None
            if not 200 <= status < 300:
                error = f"HTTP {status} {response.reason or ''}".strip()
                return FetchResult("http_error", status, error=error), _retry_after(
                    response.headers.get("Retry-After")
                )
            return _read_body(response, options, started), None
    except requests.exceptions.Timeout:
        return FetchResult("timeout", error=f"no response within {options.timeout:g} s"), None
    except requests.exceptions.TooManyRedirects as exc:
        return FetchResult("http_error", error=f"too many redirects ({exc})"), None
    except requests.exceptions.RequestException as exc:
        if _is_read_timeout(exc):
            return FetchResult("timeout", error=f"no data for {options.timeout:g} s"), None
        return FetchResult("connection_error", error=f"{type(exc).__name__}: {exc}"), None


class RedirectCheck:
    """Whether the scraper may follow a redirect to a URL, and why not.

    A target is refused when its scheme is not HTTP(S), when its host's ``robots.txt``
    disallows it, or when it is (or its name resolves to) a loopback, private, link-local or
    otherwise non-public address that the camera list does not name itself (``named`` holds
    the ``host[:port]`` of every listed camera URL: a camera on the local network is fine when
    the list says so).
    """

    def __init__(self, robots: RobotsRules | None, named: set[str] | frozenset[str]) -> None:
        self._robots = robots
        self._named = frozenset(item.lower() for item in named)

    def refuse(self, url: str) -> tuple[str, str] | None:
        """``(outcome, reason)`` when ``url`` may not be followed, else None."""
        refused = _address_refusal(url, self._named)
        if refused:
            return "redirect_refused", refused
        if self._robots is not None:
            allowed, reason = self._robots.allowed(url)
            if not allowed:
                return "robots_disallowed", f"redirected to {url}: {reason}"
        return None


def _address_refusal(url: str, named: frozenset[str]) -> str:
    """Why a redirect to ``url`` is not followed ("" when it may be): scheme and address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"redirected to {url!r}, which is not an http(s) URL"
    if parts.netloc.lower() in named:
        return ""
    address = _non_public_address(parts.hostname, parts.port)
    if address:
        return (
            f"redirected to {parts.hostname} ({address}), a loopback, private or link-local "
            "address that the camera list does not name: not followed"
        )
    return ""


def _non_public_address(host: str, port: int | None) -> str:
    """The first address of ``host`` that is not a public one ("" when all are public)."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
        except OSError:
            return ""  # unresolvable: the request itself fails with connection_error
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not address.is_global or address.is_multicast:
            return str(address)
    return ""


def download(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    options: FetchOptions,
    pacer: HostPacer,
    redirects: RedirectCheck | None = None,
) -> FetchResult:
    """Fetches ``url`` with bounded retries and exponential backoff, following redirects by hand.

    Each redirect is a new request, paced for its own host, after ``redirects`` allowed it
    (robots.txt, address); at most :data:`MAX_REDIRECTS` of them.

    Args:
        session: The session to use.
        url: The URL.
        headers: Request headers (User-Agent, conditional headers).
        options: Timeout, retries, backoff and size limit.
        pacer: Keeps requests to one host apart.
        redirects: Checks each redirect target (None: only the scheme is checked).

    Returns:
        The result (``url``: where the answer came from); its ``error`` says how many tries it
        took when there were several, and why a redirect was not followed.
    """
    check = redirects or RedirectCheck(None, {urlsplit(url).netloc})
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        fetch = _download_one(session, current, headers, options, pacer)
        if fetch.outcome != "redirect":
            fetch.url = current
            return fetch
        refused = check.refuse(fetch.location)
        if refused:
            outcome, reason = refused
            return FetchResult(outcome, fetch.status, error=reason, url=current)
        current = fetch.location
    return FetchResult(
        "http_error", fetch.status, url=current,
        error=f"more than {MAX_REDIRECTS} redirects (the last one to {fetch.location})",
    )  # fmt: skip


def _download_one(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    options: FetchOptions,
    pacer: HostPacer,
) -> FetchResult:
    """One URL, with bounded retries and exponential backoff; a redirect is returned as such."""
    host = urlsplit(url).netloc.lower()
    tries = 0
    while True:
        with pacer.slot(host):
            fetch, retry_after = _request_once(session, url, headers, options)
        tries += 1
        retryable = fetch.outcome in ("timeout", "connection_error") or (
            fetch.outcome == "http_error"
            and fetch.status is not None
            and (fetch.status >= 500 or fetch.status == 429)
        )
        if not retryable or tries > options.retries:
            break
        delay = options.backoff * 2 ** (tries - 1)
        if retry_after is not None:
            if retry_after > MAX_RETRY_AFTER:
                fetch.error += f"; Retry-After {retry_after:g} s is too long to wait"
                break
            delay = max(delay, retry_after)
        time.sleep(delay)
    if tries > 1 and fetch.error:
        fetch.error += f" (after {tries} tries)"
    return fetch
