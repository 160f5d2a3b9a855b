"""Warm launches (``launch: fork``): run a Python task's nodes as forks of one interpreter.

A node of a Python task normally starts a fresh interpreter that imports the task's
module (~150 ms of CPU for click, loguru, attrs and the user's own imports). With
``launch: fork`` one *warm interpreter* per task imports the module once and forks a
child per node; the child runs the task's click command with the node's arguments,
as :mod:`gristmill.dsl.exec` would, and exits with its status.

Two sides, one module (standard library only at module level: the local supervisor
imports it):

- :class:`Warm`, in the process that runs attempts (the local supervisor): starts the
  warm interpreter (``python -I``, gristmill found by path, like every process gristmill
  starts, see :mod:`gristmill.backends.isolated`) and asks it for nodes with
  :meth:`Warm.launch`: the node's argv, environment and working directory, and three
  descriptors: its stdout, its stderr, and a *status pipe*.
- :func:`serve`, the warm interpreter's loop: import the task, say ``ready`` (or
  ``error`` with the traceback), then for each request fork.

Each node is forked twice (the warm interpreter keeps :data:`_IDLE_MIDDLES` middle
processes forked ahead, waiting on the socket; the one that takes a request forks the
node and exits, and the warm interpreter forks another), so the node is reparented to
the launcher, which must be a
child subreaper (:func:`gristmill.worker.monitor.become_subreaper`): the node is then the
launcher's own child, watched and reaped by its monitor exactly like a spawned attempt
(pidfd, ``wait4``, exit status, CPU time, process group, limits). On the status pipe the
middle process writes ``forked <pid>`` (the node leads its own process group from then
on) and the node, once it is the launcher's child, ``started``. A node that never says
``started`` hangs between the fork and its task: a lock another thread of the warm
interpreter held at the fork stays locked in the child forever. The launcher gives up
after :data:`START_TIMEOUT` seconds and fails the node with :func:`hang_message`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

#: Seconds a forked node has to report ``started`` before it counts as hung (a fork
#: takes milliseconds; this leaves room for a machine loaded many times over).
START_TIMEOUT = 10.0
#: The directory holding the ``gristmill`` package in use (as in backends/isolated.py).
_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The warm interpreter's program: gristmill by path (its ``__init__`` runs: the task's
#: module imports ``gristmill`` as a whole), then the task's loader and the loop.
_BOOT = (f"import sys; sys.path.append({_PARENT!r}); "
         "from gristmill.dsl.exec import warm_up; from gristmill.dsl.task import get_task; "
         "from gristmill.worker.warm import serve; sys.exit(serve(get_task, warm_up))")
_MAX_MESSAGE = 1 << 20
#: Middle processes kept forked and waiting for a request: on its way to starting, a
#: node then waits for one fork (its own), not two.
_IDLE_MIDDLES = 2
#: A middle's exit code when the launcher has gone (EOF on the socket).
_GONE = 3
_RESET_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ")
                       if hasattr(signal, name))


def task_args(argv: Sequence[str], entry: str) -> list[str]:
    """The task's own arguments in a node's argv: what follows its console script, or
    ``python -m gristmill.dsl.exec module:task`` (see ``gristmill.dsl.scripts.render_argv``)."""
    if list(argv[1:4]) == ["-m", "gristmill.dsl.exec", entry]:
        return list(argv[4:])
    return list(argv[1:])


def hang_message(entry: str, threads: Sequence[str]) -> str:
    """Why a forked node that never started failed, and what to do about it."""
    held = (f"the warm interpreter of {entry} ran {len(threads)} other thread(s) "
            f"({', '.join(threads[:5])})" if threads else
            f"a thread or lock of the warm interpreter of {entry}")
    return (f"launch: fork: the node did not start within {START_TIMEOUT:g} s of its fork; "
            f"{held}: a lock held by another thread when the interpreter forked stays locked "
            "in the child. Use launch: exec for this task (libraries that start threads at "
            "import time are not fork-safe)")


class Warm:
    """One warm interpreter for the task ``entry`` (``module:qualname``), seen from the launcher.

    ``fd`` (the socket to it) becomes readable when it says ``ready`` or ``error`` and at
    its end; call :meth:`read` then. ``state`` is ``"starting"``, ``"ready"`` or
    ``"gone"``; ``error`` holds what it said when it could not import the task.
    """

    def __init__(self, entry: str, *, python: str = sys.executable,
                 env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        import socket

        self.entry = entry
        self.state = "starting"
        self.error = ""  # the traceback
        self.summary = ""  # what went wrong, on one line
        self.threads: list[str] = []  # other threads it ran once the task was imported
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self.fd = ours.fileno()
        environ = dict(os.environ if env is None else env)
        argv = [python, "-I", "-c", _BOOT, entry, str(theirs.fileno()), cwd or os.getcwd()]
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.set_inheritable(theirs.fileno(), True)
            actions = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
            # Its own process group: a hung fork is killed with it, and nothing else.
            self.pid = os.posix_spawn(python, argv, environ, file_actions=actions, setpgroup=0,
                                      setsigdef=_RESET_SIGNALS)
        finally:
            os.close(null)
            theirs.close()

    def read(self) -> None:
        """Take in what the warm interpreter said (``ready``, ``error``, or its end)."""
        try:
            data = self.sock.recv(_MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        message = json.loads(data)
        if "error" in message:
            self.error = str(message["error"])
            self.summary = str(message.get("summary") or f"cannot import {self.entry}")
            self.close()
        elif "ready" in message:
            self.state = "ready"
            self.threads = [str(name) for name in message.get("threads", [])]

    def launch(self, argv: Sequence[str], *, stdout: int, stderr: int, status: int,
               env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        """Ask for one node: fork it with these descriptors (each is duplicated over the
        socket; the caller closes its own). ``OSError`` when the interpreter is gone."""
        import socket

        request = {"args": task_args(argv, self.entry), "env": None if env is None else dict(env),
                   "cwd": cwd}
        socket.send_fds(self.sock, [json.dumps(request).encode()], [stdout, stderr, status])

    def stop(self) -> None:
        """Kill the warm interpreter and every fork of it not yet a node of its own."""
        if self.state != "gone":
            self.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Let it go: at EOF on its socket it exits."""
        if self.state != "gone":
            self.state = "gone"
            self.sock.close()


# -- the warm interpreter's side ---------------------------------------------------------------


def serve(load: Callable[[str], Any], prepare: Callable[[Any], object] | None = None) -> int:
    """The warm interpreter: ``sys.argv`` is ``[-c, entry, socket fd, working directory]``.

    Puts on ``sys.path`` what ``python -m gristmill.dsl.exec`` would have had (the working
    directory, then ``PYTHONPATH``), imports the task with ``load(entry)`` (``get_task``),
    says ``ready`` with the names of the other threads then running (or ``error`` with the
    traceback, and exits), and forks each requested node until the launcher goes.

    ``prepare(task)`` runs once the task is imported: what every node would do first and
    may inherit instead (:func:`gristmill.dsl.exec.warm_up`). Then every object is moved
    out of the garbage collector's reach (``gc.freeze``): a collection in a node would
    otherwise touch, and so copy, pages of the warm interpreter's heap.
    """
    import socket
    import threading
    import traceback

    entry, fd, cwd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    extra = [cwd, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    sys.path[:0] = [p for p in extra if p not in sys.path]
    try:
        os.chdir(cwd)
        task = load(entry)
        if prepare is not None:
            prepare(task)
    except BaseException as exc:  # every failure to import is the node's error
        summary = " ".join(str(exc).split()) or type(exc).__name__
        sock.send(json.dumps({"error": traceback.format_exc(), "summary": summary}).encode())
        return 1
    import gc

    gc.freeze()
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    try:  # threads started by native code (BLAS pools, gRPC) are not in threading's list
        native = len(os.listdir("/proc/self/task")) - 1 - len(others)
    except OSError:
        native = 0
    if native > 0:
        others.append(f"{native} started by native code")
    sock.send(json.dumps({"ready": os.getpid(), "threads": others}).encode())
    idle, stopping = 0, False
    while True:
        while not stopping and idle < _IDLE_MIDDLES:
            for stream in (sys.stdout, sys.stderr):  # nothing of ours may reach a node's log
                with contextlib.suppress(Exception):
                    stream.flush()
            try:
                middle = os.fork()
            except OSError:  # no process to be had now: the ones waiting will do, or later
                break
            if middle == 0:
                _take_request(sock, task)
            idle += 1
        if idle == 0:
            if stopping:
                return 0
            time.sleep(0.1)  # could fork none: try again
            continue
        try:
            _, status = os.wait()  # a middle took its request (or saw the launcher go)
        except ChildProcessError:
            idle = 0
            continue
        idle -= 1
        if os.waitstatus_to_exitcode(status) == _GONE:
            stopping = True


def _take_request(sock: socket.socket, task: Any) -> None:
    """A middle process, forked ahead: wait for one request, then serve it (:func:`_middle`)."""
    import socket

    try:
        data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 3)
    except OSError:
        os._exit(_GONE)
    if not data:
        os._exit(_GONE)  # the launcher has gone
    _middle(sock, task, json.loads(data), fds)


def _middle(sock: socket.socket, task: Any, request: dict[str, Any], fds: list[int]) -> None:
    """The middle process: fork the node, give it its own process group, say its pid, exit
    (so the node is reparented to the launcher, a child subreaper)."""
    sock.close()
    status, middle = fds[2], os.getpid()
    try:
        node = os.fork()
        if node == 0:
            _node(task, request, fds, middle)
        os.setpgid(node, node)
    except OSError as exc:  # no process to be had: the node says so and fails
        with contextlib.suppress(OSError):
            os.write(fds[1], f"gristmill: launch: fork: cannot fork: {exc}\n".encode())
        os._exit(1)
    try:
        os.write(status, f"forked {node}\n".encode())
    except OSError:  # the launcher gave up on this node: it must not run
        os.kill(node, signal.SIGKILL)
    os._exit(0)


def _node(task: Any, request: dict[str, Any], fds: list[int], middle: int) -> None:
    """The node: its own group, descriptors and environment; ``started``; the task; exit."""
    code = 1
    try:
        os.setpgid(0, 0)
        out, err, status = fds
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(source, target)
        for fd in (null, out, err):
            os.close(fd)
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        # sys.stdout and sys.stderr stay the warm interpreter's objects (flushed before the
        # fork), now on the node's descriptors: what the task's module configured on them
        # at import (a logging sink) goes to the node's logs, as it would in exec mode.
        if request["env"] is not None:
            os.environ.clear()
            os.environ.update(request["env"])
        if request["cwd"]:
            os.chdir(request["cwd"])
        while os.getppid() == middle:  # not the launcher's child yet: it could not reap us
            os.sched_yield()
        os.write(status, b"started\n")
        os.close(status)
    except BaseException:  # the launcher gave up, or the setup failed
        os._exit(1)
    try:
        task.command.main(args=request["args"], prog_name=task.script, standalone_mode=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # as an uncaught exception ends an interpreter
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # the output is lost, the status stays
            stream.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    """What ``sys.exit(code)`` makes an interpreter exit with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(BaseException):
        sys.stderr.write(f"{code}\n")
    return 1
