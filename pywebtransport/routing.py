"""Routing of WebTransport session requests to handlers by request path.

Theory of operation
-------------------
A :class:`Router` holds two kinds of routes:

- exact routes (``app.route("/echo")``), looked up in a dict by the request path;
- pattern routes (``app.pattern_route(r"/rooms/(?P<room>\\w+)")``), regular expressions
  tried in registration order with ``fullmatch``; their named groups become the path
  parameters (unnamed groups are ignored; a group that did not take part is left out).

Exact routes win over pattern routes. The path matched is the request's ``:path``
without its query string (the part from ``?``) and fragment.

A route may carry its own middleware chain (``Route.middleware``, run by the app after
its app-wide chain, see :mod:`pywebtransport.middleware`).

A handler is ``async def handler(session, **path_params)``. :class:`Route` inspects the
handler's signature once: it passes exactly those path parameters that the handler
declares (or all of them when it takes ``**kwargs``), so ``async def handler(session)``
works for a pattern route too and reads them from ``session.path_params`` instead.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pywebtransport.middleware import Middleware

__all__ = ["Handler", "Route", "RouteMatch", "Router", "split_path"]

#: ``async def handler(session, **path_params) -> None``
Handler: TypeAlias = Callable[..., Awaitable[Any]]


def split_path(path: str) -> str:
    """``path`` without its query string and fragment."""
    for sep in ("?", "#"):
        path = path.partition(sep)[0]
    return path


def _accepted_params(handler: Handler) -> frozenset[str] | None:
    """Keyword names ``handler`` takes after the session; None for ``**kwargs``."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # builtins or C callables: pass nothing
        return frozenset()
    names: set[str] = set()
    params = list(signature.parameters.values())
    for param in params[1:]:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(param.name)
    return frozenset(names)


@dataclass(frozen=True)
class Route:
    """One route: an exact ``path`` or a compiled ``pattern``, and its handler."""

    handler: Handler
    path: str | None = None
    pattern: re.Pattern[str] | None = None
    name: str = ""
    #: run after the app-wide middleware, before the handler (in this order)
    middleware: tuple[Middleware, ...] = ()
    _params: frozenset[str] | None = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def exact(
        cls,
        path: str,
        handler: Handler,
        name: str = "",
        middleware: Iterable[Middleware] = (),
    ) -> Route:
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")
        return cls(
            handler,
            path=path,
            name=name or path,
            middleware=tuple(middleware),
            _params=_accepted_params(handler),
        )

    @classmethod
    def regex(
        cls,
        pattern: str | re.Pattern[str],
        handler: Handler,
        name: str = "",
        middleware: Iterable[Middleware] = (),
    ) -> Route:
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        return cls(
            handler,
            pattern=compiled,
            name=name or compiled.pattern,
            middleware=tuple(middleware),
            _params=_accepted_params(handler),
        )

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters if ``path`` (without query) matches this route, else None."""
        if self.path is not None:
            return {} if path == self.path else None
        assert self.pattern is not None
        m = self.pattern.fullmatch(path)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}

    def handler_kwargs(self, params: dict[str, str]) -> dict[str, str]:
        """The path parameters the handler declares (all for ``**kwargs``)."""
        if self._params is None:
            return dict(params)
        return {k: v for k, v in params.items() if k in self._params}


@dataclass(frozen=True)
class RouteMatch:
    """The route a request path resolved to, with its path parameters."""

    route: Route
    params: dict[str, str]

    @property
    def handler(self) -> Handler:
        return self.route.handler

    def call(self, session: Any) -> Awaitable[Any]:
        """Start the handler: ``handler(session, **declared_params)``."""
        return self.route.handler(session, **self.route.handler_kwargs(self.params))


class Router:
    """Exact routes by path plus pattern routes in registration order."""

    def __init__(self) -> None:
        self._exact: dict[str, Route] = {}
        self._patterns: list[Route] = []

    @property
    def routes(self) -> list[Route]:
        """All routes: exact ones first, then patterns in registration order."""
        return [*self._exact.values(), *self._patterns]

    def add_route(
        self, path: str, handler: Handler, name: str = "", middleware: Iterable[Middleware] = ()
    ) -> Route:
        """Route ``path`` (exact match) to ``handler``; replaces an existing one."""
        route = Route.exact(path, handler, name, middleware)
        self._exact[path] = route
        return route

    def add_pattern_route(
        self,
        pattern: str | re.Pattern[str],
        handler: Handler,
        name: str = "",
        middleware: Iterable[Middleware] = (),
    ) -> Route:
        """Route paths that fully match ``pattern`` to ``handler``."""
        route = Route.regex(pattern, handler, name, middleware)
        self._patterns.append(route)
        return route

    def resolve(self, path: str) -> RouteMatch | None:
        """The route for a request ``path`` (query ignored), or None."""
        path = split_path(path)
        route = self._exact.get(path)
        if route is not None:
            return RouteMatch(route, {})
        for route in self._patterns:
            params = route.match(path)
            if params is not None:
                return RouteMatch(route, params)
        return None
