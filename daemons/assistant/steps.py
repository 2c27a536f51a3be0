"""Multi-step work on the node's loop, written as generators that yield what they wait for.

An assistant session asks for the mic, waits for the LED, listens, thinks,
acts and answers: a dozen waits on the bus. Written as callbacks it would be
unreadable; with threads it would race the node. Here a session is a
generator that yields a wait and is resumed, on the node's own thread, with
what it waited for:

    reply = yield Ask("shell.focus.request", {...})   # request/reply
    notice = yield Until(lambda: self.granted("mic"), 3.0, "the mic grant")   # a condition on the state
    text = yield Work(lambda: llm.chat(...))          # blocking work in a worker thread
    yield Sleep(8.0)

A failed request or a missed deadline is raised inside the generator at the
yield; ``cancel`` raises ``Cancelled`` there, so ``finally`` blocks always run
and a session always gives back what it took.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Generator, NamedTuple

from bus.node import Node
from bus.tracing import new_trace
from bus.wakeup import Wakeup

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor


class StepTimeout(Exception):
    """An Until whose condition did not come true in time."""


class Cancelled(Exception):
    """The task was cancelled from outside (preempted, superseded, shutting down)."""


# The steps a task yields. NamedTuples, not dataclasses: assistantd is held to 20 MiB (bus/slotted.py).
class Ask(NamedTuple):
    topic: str
    fields: dict = {}  # read, never written: one shared empty default is safe
    timeout: float = 3.0


class Until(NamedTuple):
    condition: Callable[[], Any]  # truthy value: resumed with it
    timeout: float
    what: str


class Sleep(NamedTuple):
    seconds: float


class Work(NamedTuple):
    call: Callable[[], Any]


class Task:
    def __init__(self, runner: "Runner", gen: Generator, on_done: Callable[[Any, BaseException | None], None]):
        self.runner, self.gen, self.on_done = runner, gen, on_done
        # The trace the task's work is a hop of (bus.tracing): the one it was started in (a gesture, the wake
        # phrase, a question), or one of its own; whatever resumes it later, it goes on in its own.
        self.trace = runner.node.trace or new_trace()
        self.waiting: Any = None
        self.timer = None
        self.token = 0  # which wait a late callback belongs to
        self.finished = False

    def resume(self, value: Any = None, error: BaseException | None = None) -> None:
        with self.runner.node.tracing(self.trace):
            self._resume(value, error)

    def _resume(self, value: Any, error: BaseException | None) -> None:
        self._clear()
        try:
            want = self.gen.throw(error) if error is not None else self.gen.send(value)
        except StopIteration as stop:
            self._finish(stop.value, None)
            return
        except Exception as exc:  # the session failed: its finally blocks have run
            self._finish(None, exc)
            return
        self._wait(want)

    def cancel(self, why: str) -> None:
        if not self.finished:
            self.resume(error=Cancelled(why))

    def _wait(self, want: Any) -> None:
        self.token += 1
        token, node = self.token, self.runner.node
        self.waiting = want
        if isinstance(want, Ask):
            def answered(result, error, token=token):
                if token == self.token and not self.finished:
                    self.resume(result, error)
            node.request_async(want.topic, answered, timeout=want.timeout, **want.fields)
        elif isinstance(want, Until):
            self.timer = node.after(want.timeout, lambda: self.resume(
                error=StepTimeout(f"{want.what}: not within {want.timeout:g} s")))
            self.runner.check(self)  # it may hold already
        elif isinstance(want, Sleep):
            self.timer = node.after(want.seconds, self.resume)
        elif isinstance(want, Work):
            self.runner.submit(self, token, want.call)
        else:
            self.resume(error=TypeError(f"a step cannot wait for {want!r}"))

    def _clear(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiting = None
        self.token += 1

    def _finish(self, value: Any, error: BaseException | None) -> None:
        self._clear()
        self.finished = True
        self.runner.tasks.discard(self)
        self.on_done(value, error)


class Runner:
    """Drives tasks on one node; call ``poll()`` after anything that may make an Until come true."""

    def __init__(self, node: Node, workers: int = 2, on_wake: Callable[[], None] | None = None):
        self.node, self.on_wake = node, on_wake  # on_wake: workers' news that is not a result (streamed text)
        self.tasks: set[Task] = set()
        self.workers = workers
        self.pool: ThreadPoolExecutor | None = None  # made for the first Work: offline, none ever is
        self.done: deque[tuple[Task, int, Future]] = deque()  # appended by workers, taken by the loop
        self.wakeup = Wakeup()
        node.watch(self.wakeup.fileno(), self._collect)

    def start(self, gen: Generator, on_done: Callable[[Any, BaseException | None], None]) -> Task:
        task = Task(self, gen, on_done)
        self.tasks.add(task)
        task.resume()
        return task

    def poll(self) -> None:
        for task in list(self.tasks):
            self.check(task)

    def check(self, task: Task) -> None:
        want = task.waiting
        if isinstance(want, Until) and not task.finished:
            try:
                value = want.condition()
            except Exception as exc:  # the condition decided it never will hold: raised at the yield
                task.resume(error=exc)
                return
            if value:
                task.resume(value)

    def submit(self, task: Task, token: int, call: Callable[[], Any]) -> None:
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor  # 0.2 MiB of a daemon held to 20

            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="work")
        future = self.pool.submit(call)
        future.add_done_callback(lambda f: (self.done.append((task, token, f)), self.wakeup.wake()))

    def _collect(self) -> None:
        self.wakeup.drain()
        if self.on_wake is not None:
            self.on_wake()
        while self.done:
            task, token, future = self.done.popleft()
            if token != task.token or task.finished:
                continue  # cancelled meanwhile: its result goes nowhere
            error = future.exception()
            task.resume(None if error else future.result(), error)

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel("stopping")
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.node.unwatch(self.wakeup.fileno())
        self.wakeup.close()

