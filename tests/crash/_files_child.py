"""A FileListener wait in a child process that the crash test SIGKILLs after the watcher
handed it a file and before the checkpoint.

Usage: python -u _files_child.py DB_PATH PATTERN. It prints ``WAITING`` once the wait's row
is stored; with EVKIT_CRASH_AT=file-taken it prints ``READY file-taken <name>`` when the
poll has its file, and blocks there. The listener reads the environment at call time: it
is pickled by value into the store, and the parent resumes it without EVKIT_CRASH_AT set.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from evkit import workflow


class CrashingFileListener(workflow.FileListener):
    async def poll_for_event(  # type: ignore[override]
        self, pattern: str, *, existing: bool = False, settle_seconds: float = 1.0
    ) -> workflow.FileRecord:
        record = await super().poll_for_event(pattern, existing=existing, settle_seconds=settle_seconds)
        if os.environ.get("EVKIT_CRASH_AT") == "file-taken":
            print(f"READY file-taken {record.name}", flush=True)
            await asyncio.Event().wait()
        return record


@workflow.step
def name_of(record: workflow.FileRecord) -> str:
    return record.name


def main() -> None:
    db, pattern = sys.argv[1:3]
    workflow.init(storage=db, loop="thread")
    wait = workflow.wait_for_event(CrashingFileListener, pattern, settle_seconds=0)
    handle = workflow.run_async(name_of.step(wait), workflow_id="files")
    while not workflow.sql("SELECT count(*) FROM events WHERE state = 'waiting'").fetchall()[0][0]:
        threading.Event().wait(0.01)  # rows are written behind: poll the store
    print("WAITING", flush=True)
    print(repr(handle.result()), flush=True)


if __name__ == "__main__":
    main()
