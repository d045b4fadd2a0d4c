"""The zygote: a warm Python process that forks function instances on request.

`python -m wisp.runtime.zygote --fd N [--deps DIR] [--preload a,b]` imports the in-instance server
(uvicorn, httptools, the adapters), the frameworks and every top-level module of the function's
dependency folder, then waits on a SOCK_SEQPACKET Unix socket (fd N, inherited from wisp) for one
JSON message per request. Each instance is a `fork()` of this process, so what was imported here is
shared copy-on-write and an instance only pays for importing the user's own code.

Protocol (one JSON object per datagram; fds travel with SCM_RIGHTS):

    zygote → wisp  {"type": "hello", "pid": P, "preloaded": [...], "failed": {...}, "unforkable": ""}
    wisp → zygote  {"type": "fork", "id": I, "entrypoint": "main:handle", "signature": "http",
                    "cwd": DIR, "env": {...}, "port": N}          + one fd: the instance's log pipe
    zygote → wisp  {"type": "forked", "id": I, "pid": P}   or   {"type": "error", "id": I, "message": M}
    zygote → wisp  {"type": "exit", "pid": P, "code": C}     (C is shell style: 128+N when killed)

The zygote stays single-threaded and never runs an event loop: fork() copies only the calling
thread, so a zygote that finds other threads running after its imports says it is `unforkable` and
wisp starts plain processes instead. End of file on the socket (wisp went away) ends the zygote; its
children die with it through PR_SET_PDEATHSIG, which keeps the exit-reporting chain honest.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 1024 * 1024
# Always worth having in memory before the first fork: the server and the common framework.
BASE_PRELOAD = ("wisp.runtime.funcserver", "starlette.applications", "starlette.routing",
                "starlette.responses", "starlette.requests")
SKIPPED_TOP_LEVEL = frozenset({"bin", "share", "include", "tests", "test", "setuptools", "pip",
                               "pkg_resources", "_distutils_hack", "wheel"})


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict) or "type" not in message:
        raise ValueError("not a zygote message")
    return message


def exit_code(status: int) -> int:
    """A wait status as a shell-style exit code (128+N for 'killed by signal N')."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def top_level_modules(deps: Path) -> list[str]:
    """Importable top-level names in a `pip install --target` folder (packages, modules, extensions)."""
    names: set[str] = set()
    if not deps.is_dir():
        return []
    for entry in deps.iterdir():
        name = entry.name
        if name.startswith((".", "_")) or name.endswith((".dist-info", ".egg-info", ".data")):
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.add(name)
        elif entry.is_file() and name.endswith((".py", ".so", ".pyd")):
            names.add(name.split(".", 1)[0])
    return sorted(names - SKIPPED_TOP_LEVEL)


def thread_count() -> int:
    """Every thread of this process, native ones included (threading only sees Python's)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - not Linux
        import threading
        return threading.active_count()


def preload(modules: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Import what we can; a module that fails is left for the instance to report in its own log."""
    done: list[str] = []
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
            done.append(name)
        except BaseException as exc:  # SystemExit at import must not kill the zygote
            failed[name] = f"{type(exc).__name__}: {exc}"
    return done, failed


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Zygote:
    """The zygote's main loop: fork on request, reap children, report their exits."""

    def __init__(self, ctrl: socket.socket, deps: str | None) -> None:
        self.ctrl = ctrl
        self.deps = deps
        self.pid = os.getpid()
        self.children: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def send(self, message: dict[str, Any]) -> None:
        self.ctrl.sendall(encode(message))

    def run(self) -> int:
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler is needed for the wakeup fd
        signal.set_wakeup_fd(self.wake_w)
        selector = selectors.DefaultSelector()
        selector.register(self.ctrl, selectors.EVENT_READ, "ctrl")
        selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        while True:
            for key, _ in selector.select(timeout=1.0):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                elif not self.on_request():
                    return 0
            self.reap()

    def on_request(self) -> bool:
        """Handle one datagram; False on end of file (wisp is gone)."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.ctrl, MAX_MESSAGE, 4)
        except InterruptedError:
            return True
        if not data:
            return False
        try:
            message = decode(data)
        except ValueError:
            for fd in fds:
                os.close(fd)
            return True
        if message["type"] == "fork":
            self.fork(message, fds)
        else:
            for fd in fds:
                os.close(fd)
        return True

    def fork(self, message: dict[str, Any], fds: list[int]) -> None:
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self.send({"type": "error", "id": message.get("id"), "message": "expected one log fd"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fds[0])
            self.send({"type": "error", "id": message.get("id"), "message": f"fork failed: {exc}"})
            return
        if pid == 0:
            code = 1
            try:
                code = self.become_instance(message, fds[0])
            finally:
                os._exit(code)
        os.close(fds[0])
        self.children.add(pid)
        self.send({"type": "forked", "id": message.get("id"), "pid": pid})

    def become_instance(self, message: dict[str, Any], log_fd: int) -> int:
        """In the child: new session, own stdio, the instance's env and cwd; then serve."""
        os.setsid()
        die_with_parent()
        if os.getppid() != self.pid:
            return 1
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self.ctrl.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        os.environ.clear()
        os.environ.update(message.get("env") or {})
        from wisp.runtime import funcserver

        try:
            os.chdir(message["cwd"])
        except OSError as exc:
            print(f"wisp: working directory {message['cwd']!r}: {exc.strerror}", file=sys.stderr)
            return 1
        funcserver.add_paths(self.deps)
        sys.argv = ["wisp-function", message["entrypoint"]]
        return funcserver.serve(message["entrypoint"], port=int(message["port"]),
                                signature=message.get("signature") or "http")

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"type": "exit", "pid": pid, "code": exit_code(status)})


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m wisp.runtime.zygote")
    parser.add_argument("--fd", type=int, required=True, help="the control socket (SOCK_SEQPACKET)")
    parser.add_argument("--deps", default=None, help="the function's dependency folder")
    parser.add_argument("--preload", default="", help="extra modules to import, comma separated")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    die_with_parent()
    ctrl = socket.socket(fileno=args.fd)
    if args.deps:
        sys.path.insert(0, os.path.abspath(args.deps))
    extra = [m for m in args.preload.split(",") if m]
    deps_modules = top_level_modules(Path(args.deps)) if args.deps else []
    loaded, failed = preload([*BASE_PRELOAD, *extra, *deps_modules])
    threads = thread_count()
    unforkable = (f"{threads} threads are running after preloading (an import started them); "
                  "fork() would copy only one") if threads > 1 else ""
    if "wisp.runtime.funcserver" in failed:
        unforkable = f"the function server cannot be imported: {failed['wisp.runtime.funcserver']}"
    # Move everything imported so far out of the collector's reach: a collection in an instance
    # would otherwise touch (and so copy) every shared page the zygote's objects live on.
    gc.collect()
    gc.freeze()
    zygote = Zygote(ctrl, args.deps)
    zygote.send({"type": "hello", "pid": os.getpid(), "preloaded": loaded, "failed": failed,
                 "unforkable": unforkable})
    if unforkable:
        return 0
    return zygote.run()


if __name__ == "__main__":
    sys.exit(main())
