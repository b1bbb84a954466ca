"""Group commit: callers share flushes, a caller's items are never split, failures reach
every caller of the failed flush."""

from __future__ import annotations

import asyncio

import pytest

from tidings.store import batching


class Recorder:
    """A flush function that keeps the batches it was given (and can be made to fail)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail: set[int] = set()  # items whose batch fails
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: list[int]) -> list[str]:
        await self.gate.wait()
        if self.fail & set(items):
            raise OSError("disk full")
        self.batches.append(items)
        return [f"r{i}" for i in items]


async def holding_a_flush(
    committer: batching.GroupCommitter[int, str], flush: Recorder, item: int
) -> asyncio.Future[str]:
    """Submit ``item`` and return once its flush has taken it and waits at the closed gate."""
    flush.gate.clear()
    held = asyncio.ensure_future(committer.submit(item))
    for _ in range(3):
        await asyncio.sleep(0)
    return held


async def test_concurrent_callers_share_a_flush_and_get_their_own_results() -> None:
    flush = Recorder()
    committer: batching.GroupCommitter[int, str] = batching.GroupCommitter(flush, max_items=100)
    flush.gate.clear()
    first = asyncio.ensure_future(committer.submit(0))
    await asyncio.sleep(0)  # the first flush starts alone and waits at the gate
    others = [asyncio.ensure_future(committer.submit_many([i, i + 100])) for i in range(1, 6)]
    single = asyncio.ensure_future(committer.submit(7))
    await asyncio.sleep(0)
    flush.gate.set()
    assert await first == "r0"
    assert [await o for o in others] == [[f"r{i}", f"r{i + 100}"] for i in range(1, 6)]
    assert await single == "r7"
    assert flush.batches == [[0], [1, 101, 2, 102, 3, 103, 4, 104, 5, 105, 7]]
    await committer.aclose()


async def test_a_callers_items_are_never_split_between_flushes() -> None:
    flush = Recorder()
    committer: batching.GroupCommitter[int, str] = batching.GroupCommitter(flush, max_items=4)
    flush.gate.clear()
    blocker = asyncio.ensure_future(committer.submit(99))
    await asyncio.sleep(0)
    groups = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10, 11], [12]]
    waiting = [asyncio.ensure_future(committer.submit_many(g)) for g in groups]
    await asyncio.sleep(0)
    flush.gate.set()
    await blocker
    assert [await w for w in waiting] == [[f"r{i}" for i in g] for g in groups]
    # max_items 4: [1,2,3] alone (adding [4,5] would exceed it), [4,5], then the group of six
    # alone although it is over the limit, then [12].
    assert flush.batches == [[99], [1, 2, 3], [4, 5], [6, 7, 8, 9, 10, 11], [12]]
    await committer.aclose()


async def test_a_failed_flush_fails_every_caller_in_it_and_only_them() -> None:
    flush = Recorder()
    committer: batching.GroupCommitter[int, str] = batching.GroupCommitter(flush, max_items=10)
    flush.fail = {2}
    flush.gate.clear()
    blocker = asyncio.ensure_future(committer.submit(0))
    await asyncio.sleep(0)
    same_batch = asyncio.ensure_future(committer.submit_many([1, 2]))
    neighbour = asyncio.ensure_future(committer.submit(3))
    await asyncio.sleep(0)
    flush.gate.set()
    assert await blocker == "r0"
    with pytest.raises(OSError, match="disk full"):
        await same_batch
    with pytest.raises(OSError, match="disk full"):
        await neighbour
    assert await committer.submit(4) == "r4"  # the committer goes on after a failure
    assert flush.batches == [[0], [4]]
    await committer.aclose()


async def test_closed_committer_refuses_and_empty_submissions_write_nothing() -> None:
    flush = Recorder()
    committer: batching.GroupCommitter[int, str] = batching.GroupCommitter(flush)
    assert await committer.submit_many([]) == []
    assert await committer.submit(1) == "r1"
    await committer.aclose()
    with pytest.raises(batching.Closed):
        await committer.submit(2)
    with pytest.raises(batching.Closed):
        await committer.submit_many([3, 4])
    assert flush.batches == [[1]]


async def test_posted_items_join_batches_with_waiting_callers_and_close_writes_them() -> None:
    flush = Recorder()
    committer: batching.GroupCommitter[int, str] = batching.GroupCommitter(flush, max_items=100)
    blocker = await holding_a_flush(committer, flush, 0)
    committer.post(1)
    waiting = asyncio.ensure_future(committer.submit(2))
    committer.post(3)
    await asyncio.sleep(0)
    assert committer.backlog == 3
    flush.gate.set()
    await blocker
    # The waiting caller gets its own result, not a posted item's.
    assert await waiting == "r2"
    committer.post(4)
    await committer.aclose()  # writes what was posted before it
    # 2 came after 3: its caller's task ran after both posts.
    assert flush.batches == [[0], [1, 3, 2], [4]]
    with pytest.raises(batching.Closed):
        committer.post(5)


async def test_a_failed_batch_of_posted_items_is_logged_and_the_callers_in_it_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flush = Recorder()
    flush.fail = {11}
    committer: batching.GroupCommitter[int, str] = batching.GroupCommitter(flush, name="outcomes")
    blocker = await holding_a_flush(committer, flush, 10)
    committer.post(11)
    committer.post(12)
    waiting = asyncio.ensure_future(committer.submit(13))
    await asyncio.sleep(0)
    flush.gate.set()
    assert await blocker == "r10"
    with pytest.raises(OSError, match="disk full"):
        await waiting
    committer.post(14)  # the committer goes on after a failed batch
    await committer.aclose()
    assert flush.batches == [[10], [14]]
    failed = [r for r in caplog.records if r.name == "tidings.batching"]
    assert [r.getMessage() for r in failed] == ["outcomes: 2 posted items not written"]
    assert failed[0].exc_info is not None
    assert "disk full" in str(failed[0].exc_info[1])
