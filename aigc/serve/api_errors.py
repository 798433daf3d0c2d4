"""OpenAI-style error bodies (`{"error": {"message", "type", "param", "code"}}`) and the HTTP error
each of aigc's errors is: bad input 400, unknown model or task 404, queue full 429, shutting down
503, anything else 500 (a bug's traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import AigcError, BadInputError, ContextLengthError, OptionError, PluginError, UnknownGeneratorError, UnknownModelError
from .scheduler import QueueFullError, ShuttingDownError

log = logging.getLogger("aigc.serve")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code, self.headers = status, message, type, param, code, headers


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _named_option(exc: AigcError) -> str | None:
    """The first option a message names (`calibrate` in "calibrate=batch needs ..."), if any."""
    names: list[str] = []
    exc.shown(lambda name, value: names.append(name))
    return names[0] if names else None


def from_aigc(exc: Exception, retry_after: int, about: str | None = None) -> ApiError:
    """The HTTP error for `exc` (its `client_text`); a bad input that names no option is about the body
    field `about` (the request's input)."""
    if isinstance(exc, ApiError):
        return exc
    text = client_text(exc)
    if isinstance(exc, QueueFullError):
        return ApiError(429, text, "rate_limit_error", code="queue_full", headers={"Retry-After": str(retry_after)})
    if isinstance(exc, ShuttingDownError):
        return ApiError(503, text, "server_error", code="unavailable", headers={"Retry-After": str(retry_after)})
    if isinstance(exc, UnknownModelError):  # as an unknown request `model` is
        return ApiError(404, text, param=_named_option(exc) or "model", code="model_not_found")
    if isinstance(exc, UnknownGeneratorError):
        return ApiError(404, text, code="not_found")
    if isinstance(exc, OptionError):
        return ApiError(400, text, param=exc.option, code="invalid_value")
    if isinstance(exc, ContextLengthError):
        return ApiError(400, text, param=about, code="context_length_exceeded")
    if isinstance(exc, BadInputError):
        return ApiError(400, text, param=_named_option(exc) or about, code="invalid_value")
    if isinstance(exc, PluginError):  # a plugin's bug (its jinja filter, say): the log keeps the traceback
        log.error("%s", exc, exc_info=exc)
    if isinstance(exc, AigcError):
        return ApiError(500, text, "server_error")
    return internal(exc)


def client_text(exc: Exception) -> str:
    """What a client is told of `exc`: its `public` text where it has one (no hints naming the
    operator's templates or files), and no path of the server's directories (its config and cache
    directories and working directory, whose paths are cut to what lies under them; the home
    directory, shown as ~): the CLI's message says more, for the one who runs it."""
    public = getattr(exc, "public", None)
    text = exc.located(public) if public else str(exc)
    from ..config import cache_dir, config_dir

    places = {str(config_dir()): "", str(cache_dir()): "", os.getcwd(): "", os.path.expanduser("~"): "~" + os.sep}  # "~" itself where there is no home
    for place in sorted(places, key=len, reverse=True):  # the config directory before the home it lies in
        if len(Path(place).parts) > 1:  # not the root: `/` would cut URLs too
            text = text.replace(place + os.sep, places[place])
    return text


def internal(exc: Exception) -> ApiError:
    """A bug's 500: the log has its traceback, the client a line saying so."""
    log.error("unexpected error", exc_info=exc)
    return ApiError(500, "internal error; the server log has the details", "server_error")
