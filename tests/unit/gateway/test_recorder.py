"""The usage recorder: a flush returns only once what was added before it is written, even
while another flush is still writing (a budget seed or a usage report flushes first)."""

from __future__ import annotations

import asyncio
import threading

from services.gateway.recorder import UsageRecorder


class SlowStore:
    """A key store whose first write waits until the test lets it go."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.first_started = threading.Event()
        self.release = threading.Event()

    def record_usage(self, rows: list[tuple], audit: list) -> None:
        if not self.first_started.is_set():
            self.first_started.set()
            assert self.release.wait(10), "the test never released the first write"
        self.rows.extend(rows)


def test_a_flush_waits_for_the_batch_another_flush_is_writing():
    async def scenario() -> tuple[int, int]:
        store = SlowStore()
        recorder = UsageRecorder(store)  # type: ignore[arg-type]
        recorder.add("k1", "m", 10, 2, 200, cost_micro=14_000, team="t")
        periodic = asyncio.create_task(recorder.flush())
        assert await asyncio.to_thread(store.first_started.wait, 10)
        recorder.add("k1", "m", 10, 2, 200, cost_micro=14_000, team="t")
        report = asyncio.create_task(recorder.flush())
        await asyncio.sleep(0)
        seen_while_writing = len(store.rows)
        store.release.set()
        await asyncio.wait_for(report, 10)
        seen_after_report = len(store.rows)
        await periodic
        return seen_while_writing, seen_after_report

    while_writing, after_report = asyncio.run(scenario())
    assert while_writing == 0
    assert after_report == 2  # the in-flight batch and the new row, not just the new one
