"""Python's cyclic garbage collector paused around work that allocates many objects and creates no
reference cycles: a live batch (`processor.stream.folding`, `processor.stream.partition_state`) and
a file replay (`processor.replay`), which share this one helper."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused(promote: bool = False) -> Iterator[None]:
    """Python's cyclic garbage collector switched off for a block, and on again after it.

    A batch (`folding.fold_partition`, then `PartitionState.batch_records`) and a file replay
    allocate hundreds of thousands to millions of objects that live on (history entries, outcomes
    and output records until they are sent, a replay's whole state) and create no reference cycles:
    a collection right after a batch or a whole replay finds nothing unreachable (measured over the
    simulated program). At the default thresholds the collector nevertheless scans them and the
    live state again and again, a fifth to a quarter of the fold's time (docs/performance.md,
    "Domain core"). Memory is freed by reference counting as ever; after the block the collector
    runs as usual, its next young collection taking what the block left.

    `promote` (a file replay, whose survivors are its state, kept until its document is built): hand
    everything to the oldest generation unscanned instead (`gc.freeze()` + `gc.unfreeze()`, only
    when nothing else is frozen: a caller's own freeze is left alone), sparing that young collection
    a pass over the whole state (~10% of a replay); a full collection still reaches it all."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if promote and gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
