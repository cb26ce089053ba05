"""Reserve seeds: how many rows a round keeps in flight, and which seeds replace drops.

A round plans, per data type, the seeds for the samples still needed, widened
by ``oversample``, and ``reserve`` more. The gate keeps
``ceil(still needed * (1 + oversample))`` rows in flight: the planned seeds
start at once; a reserve waits at the instruction stage until a drop, wherever
in the pipeline it happens, leaves fewer rows in flight than that. So a drop
is replaced at once instead of after the round, and with ``oversample`` > 0
the last samples of a round are hedged too: when only one is still needed,
two rows run for it.

The LLM stages report their drops as they happen; the driver reports every
finished row it reads, so a drop the stages did not report (a retrieval or
sample stage drop, a stage actor that died) still releases a reserve. Reports
are counted once per sample id. Once a data type has all its samples, its
waiting reserves are turned away (the instruction stage marks them
``reserve_unused``; the driver writes nothing for them, so their ids stay free
for a later run).
"""

from __future__ import annotations

import asyncio
import math

import ray

RESERVE_UNUSED = "reserve_unused"  # the drop reason of a reserve turned away; such rows are not written


@ray.remote(num_cpus=0)
class SeedGate:
    """Admits seed rows of a round.

    Args:
        order: each data type's sample ids in planned order (seeds to start at once first).
        needed: samples still needed per data type when the round starts.
        started: how many of ``order`` start at once, per data type.
        oversample: rows kept in flight per sample still needed, beyond one.
    """

    def __init__(self, order: dict[str, list[str]], needed: dict[str, int], started: dict[str, int],
                 oversample: float):
        self._place = {sid: (data_type, rank) for data_type, ids in order.items() for rank, sid in enumerate(ids)}
        self._planned = {data_type: len(ids) for data_type, ids in order.items()}
        self._needed = dict(needed)
        self._started = {data_type: started.get(data_type, 0) for data_type in order}
        self._released = dict(self._started)
        self._reserves_started = {data_type: 0 for data_type in order}
        self._finished = {data_type: 0 for data_type in order}
        self._oversample = oversample
        self._admitted: set[str] = set()  # reserves that started
        self._reported: set[str] = set()
        self._changed = asyncio.Condition()  # binds to the actor's event loop when first used (Python >= 3.10)

    async def admit(self, sample_id: str) -> bool:
        """Wait until ``sample_id`` may start (True; at once for a planned seed or a row the gate does not
        hold back), or until its data type has all its samples (False: the reserve is not needed).

        Released places go to reserves in the order they ask, not by id: Ray Data may hand a later
        reserve to the stage first, and the place must not wait for one that cannot reach the stage."""
        if sample_id not in self._place or sample_id in self._admitted:
            return True  # (asked again when Ray retries the task of a reserve that started)
        data_type, rank = self._place[sample_id]
        if rank < self._started[data_type]:
            return True
        async with self._changed:
            # The same reserve may be asked for twice: a node died with the stage actor whose call still
            # waits here, and Ray retried the task elsewhere. Whichever call takes the place lets both through.
            await self._changed.wait_for(lambda: sample_id in self._admitted or self._free(data_type) > 0
                                         or self._needed[data_type] <= 0)
            if sample_id in self._admitted:
                return True
            if self._needed[data_type] <= 0:
                return False
            self._admitted.add(sample_id)
            self._reserves_started[data_type] += 1
            return True

    async def note_drop(self, sample_id: str) -> None:
        """A row was dropped: a reserve of its data type takes its place."""
        await self._finish(sample_id, kept=False)

    async def note_kept(self, sample_id: str) -> None:
        """A row became a sample."""
        await self._finish(sample_id, kept=True)

    async def released(self) -> dict[str, int]:
        return dict(self._released)

    async def _finish(self, sample_id: str, *, kept: bool) -> None:
        if sample_id in self._reported or sample_id not in self._place:
            return
        self._reported.add(sample_id)
        data_type = self._place[sample_id][0]
        async with self._changed:
            self._finished[data_type] += 1
            self._needed[data_type] -= kept
            if self._needed[data_type] > 0:
                in_flight = self._released[data_type] - self._finished[data_type]
                wanted = math.ceil(self._needed[data_type] * (1 + self._oversample))
                self._released[data_type] = min(self._planned[data_type],
                                                self._released[data_type] + max(0, wanted - in_flight))
            self._changed.notify_all()

    def _free(self, data_type: str) -> int:
        """Released places no reserve has taken yet."""
        return self._released[data_type] - self._started[data_type] - self._reserves_started[data_type]
