"""How restore secondary names channels and encodes time ticks on the replicate stream, as
Milvus reads them (pkg/util/funcutil ToPhysicalChannel, pkg/streaming/util/message encoder):
every kind of channel name a message can carry, and every time tick."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milvus_backup.milvus._proto import messages_pb2
from milvus_backup.milvus.adapters.replicate import Broadcast, base36, pchannel


@pytest.mark.parametrize("name, pch", [
    ("by-dev-rootcoord-dml_0_451000000000000001v0", "by-dev-rootcoord-dml_0"),  # a collection's vchannel
    ("by-dev-rootcoord-dml_3_451v1", "by-dev-rootcoord-dml_3"),
    ("by-dev-rootcoord-dml_0_vcchan", "by-dev-rootcoord-dml_0"),  # the control channel
    ("by-dev-rootcoord-dml_0", "by-dev-rootcoord-dml_0"),  # a pchannel (a flush-all message's _vc) is itself
    ("by-dev-rootcoord-dml_12", "by-dev-rootcoord-dml_12"),
    ("dml", "dml"),
])
def test_each_kind_of_channel_name_maps_to_its_pchannel(name, pch):
    assert pchannel(name) == pch


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_time_ticks_are_base_36_as_milvus_reads_them(tick):
    assert int(base36(tick), 36) == tick and base36(tick) == base36(tick).lower()


def test_a_broadcast_is_one_copy_per_vchannel_with_one_broadcast_header():
    header = messages_pb2.CreateDatabaseMessageHeader(db_name="db1", db_id=7)
    copies = Broadcast(16, 2, header, b"body", ["a_1v0", "a_1v0", "ctl_vcchan"]).split()
    assert [vc for vc, _, _ in copies] == ["a_1v0", "ctl_vcchan"]  # deduplicated, in order
    bh = {p["_bh"] for _, _, p in copies}
    assert len(bh) == 1
    decoded = messages_pb2.BroadcastHeader.FromString(base64.b64decode(bh.pop()))
    assert decoded.broadcast_id and list(decoded.vchannels) == ["a_1v0", "ctl_vcchan"]
    for vc, payload, props in copies:
        assert (props["_t"], props["_v"], props["_vc"], payload) == ("16", "2", vc, b"body")
        assert messages_pb2.CreateDatabaseMessageHeader.FromString(base64.b64decode(props["_h"])) == header
