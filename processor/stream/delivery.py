"""Sending a batch's output records on Faust's own producer, and waiting until they are delivered.

State is written to the table only after this returns, so a crash can repeat outputs (harmless:
their ids are deterministic) but never lose them: offsets are never ahead of outputs or state.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from processor.stream.folding import OutRecord

log = logging.getLogger(__name__)


async def deliver(app, records: Sequence[OutRecord]) -> None:  # type: ignore[no-untyped-def]
    backoff = 0.2
    while True:
        try:
            futures = [await app.producer.send(r.topic, r.key, r.value, None, None, r.headers or None)
                       for r in records]
            await asyncio.gather(*futures)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broken infrastructure: retry, never ack what was not delivered
            log.warning("delivery of %d records failed (%r); retrying in %.1fs", len(records), exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def crash_stop(where: str) -> None:
    """Stop the worker at once, before Faust acks the batch and commits its offsets.

    An agent body that raises still has its events acked by Faust (STACK.md), which would skip them.
    Exiting immediately leaves the committed offsets where they were; the restarted worker resumes
    from its state's own watermark and the batch is processed again (a bug stays visible, loudly).
    """
    log.critical("%s failed; stopping the worker so that no offset is committed past it", where, exc_info=True)
    logging.shutdown()
    os._exit(70)
