"""One file over HTTP(S) with urllib: timeouts, retries with exponential back-off, resume of partial
transfers.

Failure classes, chosen so an offline machine pays seconds, not minutes, for canonical mirrors it cannot
reach:
- unreachable host (DNS failure, connection refused, no route, connect timeout): the mirror fails at once;
  retrying an address that does not resolve only burns back-off time before the next mirror is tried.
- HTTP 4xx (except 408/429): permanent, the file is not there.
- everything else (5xx, read timeouts, resets, truncated bodies): retried with back-off. The bytes already
  received stay in `<dest>.part`; the next attempt asks for the rest with a Range request, and starts over
  when the server ignores Range (status 200 instead of 206).
- a body longer than `max_bytes` (announced, or counted while it streams in): permanent, the partial file is
  removed. Two mirrors are plain HTTP, so anyone on the path can send anything; the hash check comes later.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

USER_AGENT = "ganforge-download (python-urllib)"
CHUNK = 1 << 20
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


class FetchError(Exception):
    """This URL cannot be fetched; the message says why (one line)."""


class Unreachable(FetchError):
    """The host cannot be reached at all: no other file from it will come either."""


class _Retry(Exception):
    """A transient failure: worth another attempt after back-off."""


def _why_unreachable(reason: object) -> str:
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host (DNS: {reason.strerror or reason}); no network?"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "connection timed out"
    return str(reason)


def _too_large(part: Path, max_bytes: int) -> FetchError:
    part.unlink(missing_ok=True)
    return FetchError(f"refused: larger than this file's limit of {max_bytes:,} bytes")


def _attempt(url: str, part: Path, timeout: float, max_bytes: int, progress: Progress | None) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:  # our partial file does not fit what the server has now: start over
            part.unlink()
            raise _Retry("server refused to resume (HTTP 416), restarting") from None
        if e.code in RETRY_STATUS:
            raise _Retry(f"HTTP {e.code} {e.reason}") from None
        raise FetchError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        # urllib wraps only errors raised before a response, i.e. while resolving/connecting
        raise Unreachable(_why_unreachable(e.reason)) from None
    except (OSError, http.client.HTTPException) as e:  # connected, but no (valid) response in time
        raise _Retry(f"no response: {e or type(e).__name__}") from None

    with resp:
        status = getattr(resp, "status", None) or 200  # file:// responses have no status
        resumed = status == 206
        if resumed and not (have and (resp.headers.get("Content-Range") or "").startswith(f"bytes {have}-")):
            part.unlink(missing_ok=True)
            raise _Retry(f"server sent a range we did not ask for ({resp.headers.get('Content-Range')})")
        if not resumed:
            have = 0  # the server sent the whole file (no Range support): restart
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise _too_large(part, max_bytes)
        try:
            with part.open("ab" if resumed else "wb") as f:
                while chunk := resp.read(CHUNK):
                    if have + len(chunk) > max_bytes:  # no or a lying Content-Length: count what arrives
                        raise _too_large(part, max_bytes)
                    f.write(chunk)
                    have += len(chunk)
                    if progress:
                        progress(have, total)
        except (OSError, http.client.HTTPException) as e:
            raise _Retry(f"interrupted after {have} bytes: {e or type(e).__name__}") from None
    if total is not None and have < total:
        raise _Retry(f"truncated: got {have} of {total} bytes")


def download(url: str, dest: str | Path, *, timeout: float, retries: int, backoff: float, max_bytes: int,
             progress: Progress | None = None) -> Path:
    """Fetch `url` into `dest` (atomically: the bytes accumulate in `dest.part`). Raises FetchError.

    timeout: seconds for connecting and for each read; retries: attempts in all; backoff: seconds before
    the 2nd attempt, doubling after each further failure; max_bytes: the most the body may have.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    why = "no attempt made"
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _attempt(url, part, timeout, max_bytes, progress)
        except _Retry as e:
            why = str(e)
            continue
        os.replace(part, dest)
        return dest
    raise FetchError(f"{why} (gave up after {retries} attempt{'s' * (retries > 1)})")
