"""Sends one event twice while the store's commit is held, for the parent to SIGKILL.

Usage: python -u _repeat_child.py DB_PATH. The store thread is parked (as a slow disk
would hold a commit) until the parent writes ``release`` to stdin. The child prints
``ANSWERED duplicate=<bool>`` when the repeated send returns, and ``READY parked`` once
both sends had every chance to run while the commit is held; then it waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys
import threading

from evkit import workflow


async def main(db: str) -> None:
    runtime = await asyncio.to_thread(workflow.init, storage=db)
    inbox = runtime.engine().inbox
    release = threading.Event()
    runtime.writer.submit(lambda _con: release.wait())
    threading.Thread(target=lambda: sys.stdin.readline() and release.set(), daemon=True).start()
    first = asyncio.create_task(inbox.send("w", "k", "hello", event_id="e1", known_new=True))
    repeat = asyncio.create_task(inbox.send("w", "k", "hello", event_id="e1"))
    repeat.add_done_callback(lambda task: print(f"ANSWERED duplicate={task.result().duplicate}", flush=True))
    for _ in range(20):  # a send that can answer without the store does so now
        await asyncio.sleep(0)
    print("READY parked", flush=True)
    await asyncio.gather(first, repeat)
    await asyncio.Event().wait()  # the parent kills us


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
