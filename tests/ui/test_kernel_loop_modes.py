"""A real ipykernel: the loop-mode trade-off, and the widget's "Send" reaching the engine
through a real comm. Assertions are on what the kernel reports (stream text, comm
messages), never on sleeps in this process."""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass, field

import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

pytestmark = pytest.mark.slow

REPLY_TIMEOUT_SECONDS = 60


@dataclass
class CellResult:
    reply: dict
    stdout: str = ""
    messages: list[dict] = field(default_factory=list)  # every iopub message while busy

    def widget_updates(self) -> list[dict]:
        return [
            m["content"]["data"]["state"]
            for m in self.messages
            if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
        ]


class Kernel:
    """A kernel of this venv's Python, driven over its channels."""

    def __init__(self, tmp_path):
        spec_dir = tmp_path / "kernels" / "evkit-test"
        spec_dir.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "evkit", "language": "python"})
        )
        self.km = KernelManager(
            kernel_name="evkit-test",
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]),
        )
        self.km.start_kernel(cwd=str(tmp_path))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=REPLY_TIMEOUT_SECONDS)

    def run(self, code: str) -> CellResult:
        msg_id = self.kc.execute(textwrap.dedent(code))
        result = CellResult(reply={})
        busy = False
        while True:
            msg = self.kc.get_iopub_msg(timeout=REPLY_TIMEOUT_SECONDS)
            mine = msg["parent_header"].get("msg_id") == msg_id
            if msg["msg_type"] == "status" and mine:
                if msg["content"]["execution_state"] == "busy":
                    busy = True
                    continue
                if msg["content"]["execution_state"] == "idle":
                    break
            if busy:
                result.messages.append(msg)
                if msg["msg_type"] == "stream" and mine:
                    result.stdout += msg["content"]["text"]
                if msg["msg_type"] == "error" and mine:
                    raise AssertionError("\n".join(msg["content"]["traceback"]))
        result.reply = self.kc.get_shell_msg(timeout=REPLY_TIMEOUT_SECONDS)
        assert result.reply["content"]["status"] == "ok", result.reply["content"]
        return result

    def send_comm_msg(self, comm_id: str, data: dict) -> None:
        self.kc.shell_channel.send(self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(tmp_path)
    yield k
    k.close()


BUSY_CELL = """
t0 = time.monotonic()
while not (h.done() and w.status == "SUCCESSFUL") and time.monotonic() - t0 < {limit}:
    time.sleep(0.02)   # synchronous work: the kernel's loop cannot run meanwhile
print(h.done(), h.status.value, w.status)
"""


def test_sleeping_cell_pauses_the_default_loop_but_not_the_thread_loop(kernel, tmp_path):
    store = str(tmp_path / "modes.duckdb")
    kernel.run(f"""
        import asyncio, time
        from evkit import workflow
        from evkit.notebook import run_widget
        workflow.init(storage={store!r})        # default: the engine runs on the kernel's loop
        h = workflow.sleep(0.2).run_async(workflow_id="on-kernel-loop")
        w = run_widget(h)
        display(h)
    """)
    kernel.run('while w.status != "WAITING":\n    await asyncio.sleep(0.01)')  # the timer is set and shown

    paused = kernel.run(BUSY_CELL.format(limit=1.0))

    # The timer was due 0.2 s into a 1 s cell, yet nothing happened: the loop was blocked.
    assert paused.stdout.split() == ["False", "WAITING", "WAITING"]
    assert paused.widget_updates() == []
    resumed = kernel.run("await h\nprint(h.status.value)")
    assert resumed.stdout.strip() == "SUCCESSFUL"  # the wait finishes once the loop runs

    kernel.run(f"""
        workflow.init(storage={store!r}, loop="thread")   # the engine gets its own thread
        h = workflow.sleep(0.2).run_async(workflow_id="on-engine-thread")
        w = run_widget(h)
        display(h)
    """)

    busy = kernel.run(BUSY_CELL.format(limit=30))

    # The timer fired and the widget's updates left the kernel while the cell was busy.
    assert busy.stdout.split() == ["True", "SUCCESSFUL", "SUCCESSFUL"]
    updates = busy.widget_updates()
    assert any(u.get("status") == "SUCCESSFUL" for u in updates)
    states = [u["states"] for u in updates if "states" in u]
    assert states
    assert set(states[-1].values()) == {"done", "committed"}, states


def test_send_button_message_completes_a_manual_wait_in_the_default_loop_mode(kernel, tmp_path):
    store = str(tmp_path / "send.duckdb")
    shown = kernel.run(f"""
        import asyncio
        from evkit import workflow
        from evkit.notebook import run_widget
        workflow.init(storage={store!r})

        @workflow.step
        def decide(answer):
            return f"answer: {{answer}}"

        h = decide.step(workflow.wait_for_event(workflow.ManualListener, key="approve")).run_async(
            workflow_id="approval")
        w = run_widget(h)
        display(h)
    """)
    views = [
        m["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for m in shown.messages
        if m["msg_type"] == "display_data"
    ]
    assert len(views) == 1
    kernel.run('while not any(r["inbox_key"] == "approve" for r in w.events):\n    await asyncio.sleep(0.01)')

    # What the browser sends when "Send" is pressed with `{"ok": true}` typed in the form.
    kernel.send_comm_msg(
        views[0],
        {
            "method": "custom",
            "content": {"type": "send", "step": "ManualListener", "payload": '{"ok": true}'},
        },
    )
    done = kernel.run("print(await asyncio.wait_for(h, 30))\nprint(w.send_status['ManualListener']['ok'])")

    assert done.stdout.splitlines() == ["answer: {'ok': True}", "True"]
