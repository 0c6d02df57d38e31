"""A local web site with the pages a collector meets in the wild, good and hostile.

- `/robots.txt` disallows `/private/` (and sets no Crawl-delay unless `crawl_delay` is given);
- `/article/{name}`: an HTML article (after `?delay=S` seconds) whose main text names `name`;
- `/plain`: text/plain; `/binary`: a PNG; `/notfound`: 404;
- `/slow`: answers after `slow_seconds`; `/drip`: sends one byte every 0.2 s for a minute, so only
  a time limit on the whole fetch stops it; `/huge`: 20 MB of HTML without a Content-Length;
  `/huge-declared`: a Content-Length of 50 MB;
- `/loop/a` ↔ `/loop/b` redirect to each other; `/chain/{n}` redirects n times before the article;
- `/to-metadata` redirects to http://169.254.169.254/ (a link-local metadata address);
- `/raw/{name}`: bytes given to `serve_raw` with exactly the Content-Type given (no charset added),
  for pages in legacy encodings.
`max_in_flight` is the most requests the site served at the same time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.standins.background import BackgroundServer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048


def article_html(name: str) -> str:
    paragraph = (f"{name} builds warehouse robots that pick and pack parcels for online retailers. "
                 "The company was founded by engineers who wanted to make logistics calmer. ") * 4
    return (f"<html><head><title>{name} | News</title></head><body><nav>Home | About | Contact</nav>"
            f"<article><h1>About {name}</h1><p>{paragraph}</p><p>{paragraph}</p></article>"
            "<footer>Copyright</footer></body></html>")


class WebStandin(BackgroundServer):
    def __init__(self, slow_seconds: float = 30.0, crawl_delay: float | None = None) -> None:
        self.slow_seconds = slow_seconds
        self.crawl_delay = crawl_delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.paths: list[str] = []
        self.raw: dict[str, tuple[str, bytes]] = {}
        routes = [
            Route("/robots.txt", self._robots),
            Route("/article/{name}", self._article),
            Route("/private/{name}", self._article),
            Route("/plain", lambda r: PlainTextResponse("Plain words about parcels and robots. " * 10)),
            Route("/binary", lambda r: Response(PNG, media_type="image/png")),
            Route("/notfound", lambda r: PlainTextResponse("no such page", status_code=404)),
            Route("/slow", self._slow),
            Route("/drip", self._drip),
            Route("/huge", self._huge),
            Route("/huge-declared", self._huge_declared),
            Route("/loop/a", lambda r: RedirectResponse("/loop/b", status_code=302)),
            Route("/loop/b", lambda r: RedirectResponse("/loop/a", status_code=302)),
            Route("/chain/{n:int}", self._chain),
            Route("/raw/{name}", self._raw),
            Route("/to-metadata", lambda r: RedirectResponse("http://169.254.169.254/latest/meta-data/",
                                                             status_code=302)),
        ]
        app = Starlette(routes=routes)

        async def counted(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            self.paths.append(scope["path"])
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await app(scope, receive, send)
            finally:
                self.in_flight -= 1

        super().__init__(counted)

    def url_for(self, path: str) -> str:
        return f"{self.url}{path}"

    def serve_raw(self, name: str, content_type: str, body: bytes) -> str:
        """Serve `body` at /raw/{name} with this Content-Type header; returns its URL."""
        self.raw[name] = (content_type, body)
        return self.url_for(f"/raw/{name}")

    async def _raw(self, request: Request) -> Response:
        content_type, body = self.raw[request.path_params["name"]]
        # Set as a header, not media_type: Starlette would append "; charset=utf-8" to text/*.
        return Response(body, headers={"content-type": content_type})

    async def _robots(self, request: Request) -> Response:
        text = "User-agent: *\nDisallow: /private/\n"
        if self.crawl_delay:
            text += f"Crawl-delay: {self.crawl_delay:g}\n"
        return PlainTextResponse(text)

    async def _article(self, request: Request) -> Response:
        if delay := float(request.query_params.get("delay", 0)):
            await asyncio.sleep(delay)
        return HTMLResponse(article_html(request.path_params["name"]))

    async def _slow(self, request: Request) -> Response:
        await asyncio.sleep(self.slow_seconds)
        return HTMLResponse(article_html("Slow"))

    async def _drip(self, request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"<html><body><p>"
            for _ in range(300):
                await asyncio.sleep(0.2)
                yield b"x"
        return StreamingResponse(body(), media_type="text/html")

    async def _huge(self, request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"<html><body><p>"
            for _ in range(20 * 16):
                yield b"a" * 65536
        return StreamingResponse(body(), media_type="text/html")

    async def _huge_declared(self, request: Request) -> Response:
        return Response(b"<html></html>", media_type="text/html", headers={"content-length": "52428800"})

    async def _chain(self, request: Request) -> Response:
        n = request.path_params["n"]
        if n <= 0:
            return HTMLResponse(article_html("Chained"))
        return RedirectResponse(f"/chain/{n - 1}", status_code=301)
