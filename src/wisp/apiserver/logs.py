"""`GET …/revisions/{name}/log`: instance logs of a revision, tailed and optionally followed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from wisp.api import kinds
from wisp.api.errors import APIError, BadRequest
from wisp.apiserver.resources import render
from wisp.apiserver.status import from_error
from wisp.runtime.logs import tail
from wisp.store import Store

REVISION = kinds.lookup("revisions")
POLL = 0.2


def _files(root: Path) -> list[Path]:
    return sorted((p for p in root.glob("*.log")), key=lambda p: p.stat().st_mtime) if root.is_dir() else []


def _tail(root: Path, lines: int) -> list[str]:
    """The last `lines` lines over every instance's log, in time order (lines start with a timestamp)."""
    merged: list[str] = []
    for path in _files(root):
        merged.extend(f"[{path.stem}] {line}" if " " not in line[:1] else line for line in tail(path, lines))
    merged.sort(key=lambda line: line.split(" ", 2)[1] if line.startswith("[") else line)
    return merged[-lines:] if lines else merged


async def _follow(root: Path, start: dict[Path, int]) -> AsyncIterator[bytes]:
    offsets = dict(start)
    while True:
        for path in _files(root):
            size = path.stat().st_size
            offset = offsets.get(path, 0)
            if size < offset:  # rotated
                offset = 0
            if size > offset:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(size - offset)
                cut = chunk.rfind(b"\n") + 1
                if cut:
                    for line in chunk[:cut].splitlines():
                        yield f"[{path.stem}] ".encode() + line + b"\n"
                    offsets[path] = offset + cut
        await asyncio.sleep(POLL)


def log_routes(store: Store, data_dir: Path) -> list[Route]:
    async def handler(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        try:
            store.get(REVISION, ns, name)
            lines_text = request.query_params.get("tailLines", "100")
            if not lines_text.isdigit():
                raise BadRequest("tailLines must be a non-negative integer")
        except APIError as exc:
            return render(request, from_error(exc), exc.code)
        root = data_dir / "logs" / ns / name
        text = "".join(line + "\n" for line in _tail(root, int(lines_text)))
        if request.query_params.get("follow") not in ("true", "1"):
            return Response(text, media_type="text/plain")
        start = {p: p.stat().st_size for p in _files(root)}

        async def stream() -> AsyncIterator[bytes]:
            yield text.encode()
            async for chunk in _follow(root, start):
                yield chunk

        return StreamingResponse(stream(), media_type="text/plain")

    return [Route("/apis/serving.knative.dev/v1/namespaces/{ns}/revisions/{name}/log", handler)]
