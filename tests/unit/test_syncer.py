"""The syncer's decisions, on a store in memory: what the host changed is restored and counted,
and a deleted profile's file stays while a pod on the node uses it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp
from agent.node.catalog import ProfileCatalog, ProfileRecord
from agent.node.metrics import Metrics
from agent.node.store import MemoryStore
from agent.node.syncer import Syncer
from agent.profiles.render import render
from agent.runtime.process_metrics import PREFIX

KEY = ProfileKey("team", "web")
RENDERED = render(OciSeccomp.model_validate({"defaultAction": "SCMP_ACT_ERRNO"}))


def new_syncer(
    catalog: ProfileCatalog, store: MemoryStore, metrics: Metrics, in_use: Callable[..., bool]
) -> Syncer:
    return Syncer(catalog, store, metrics, in_use=in_use, on_failure=print, on_change=lambda: None)


async def sync(syncer: Syncer) -> None:
    """One pass over KEY."""
    syncer.enqueue(KEY)
    await syncer.wait_idle()


def test_a_file_changed_on_the_host_is_restored_and_counted() -> None:
    catalog, store, metrics = ProfileCatalog(), MemoryStore(), Metrics()
    catalog.accept(ProfileRecord(KEY, "uid", 1, RENDERED))
    syncer = new_syncer(catalog, store, metrics, in_use=lambda _: False)

    async def scenario() -> None:
        workers = asyncio.create_task(syncer.run())
        await sync(syncer)
        assert store.files[KEY] == RENDERED.content
        assert catalog.installed[KEY] == RENDERED.sha256
        store.files[KEY] = b"tampered"
        await sync(syncer)
        assert store.files[KEY] == RENDERED.content
        workers.cancel()

    asyncio.run(scenario())
    assert metrics.registry.get_sample_value(f"{PREFIX}_drift_repairs_total") == 1


def test_a_deleted_profile_stays_while_a_pod_uses_it() -> None:
    catalog, store, metrics = ProfileCatalog(), MemoryStore(), Metrics()
    store.files[KEY] = RENDERED.content
    catalog.mark_installed(KEY, RENDERED.sha256)
    pinned = {KEY}
    syncer = new_syncer(catalog, store, metrics, in_use=lambda key: key in pinned)

    async def scenario() -> None:
        workers = asyncio.create_task(syncer.run())
        await sync(syncer)
        assert store.files == {KEY: RENDERED.content}
        pinned.clear()
        await sync(syncer)
        assert store.files == {}
        assert catalog.installed == {}
        workers.cancel()

    asyncio.run(scenario())
    assert metrics.registry.get_sample_value(f"{PREFIX}_files_removed_total") == 1
