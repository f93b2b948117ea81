"""Worker processes that end with their parent.

A process pool's workers outlive a parent killed by SIGKILL (nothing runs in the
parent to stop them), each holding its models in memory. :func:`exit_with_parent`,
called in a worker (a pool's ``initializer``), starts a daemon thread that ends the
worker as soon as its parent is gone.
"""

from __future__ import annotations

import os
import threading

POLL_SECONDS = 0.5


def exit_with_parent(poll_seconds: float = POLL_SECONDS) -> None:
    """End this process (exit status 1) within ``poll_seconds`` of its parent's death.

    The parent is the process that started this one; when it dies the operating
    system gives this process another parent, which the watcher notices.
    """
    parent = os.getppid()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(poll_seconds):
            if os.getppid() != parent:
                os._exit(1)  # the parent is gone: nobody reads this worker's results

    threading.Thread(target=watch, name="curate-exit-with-parent", daemon=True).start()
