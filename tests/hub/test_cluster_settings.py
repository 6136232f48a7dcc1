"""Settings a cluster node refuses, with a reason that says what to do instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.settings import HubSettings


def test_a_cluster_node_refuses_the_embedded_broker(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs the shared broker"):
        HubSettings(data_dir=tmp_path, cluster={"workers": 2, "worker": 1})
    with pytest.raises(ValidationError, match="needs the shared broker"):
        HubSettings(data_dir=tmp_path, cluster={"role": "api"})


def test_a_cluster_node_refuses_broker_accounts_the_hub_writes(tmp_path: Path) -> None:
    mqtt = {"embedded": False, "auth_dir": str(tmp_path / "auth")}
    with pytest.raises(ValidationError, match="disconnect each other") as refused:
        HubSettings(data_dir=tmp_path, mqtt=mqtt, cluster={"workers": 2, "worker": 0})
    assert "docs/scaleout.md" in str(refused.value)
    with pytest.raises(ValidationError, match="disconnect each other"):
        HubSettings(data_dir=tmp_path, mqtt=mqtt, cluster={"role": "video"})


def test_one_process_hub_and_a_cluster_on_a_shared_broker_are_accepted(tmp_path: Path) -> None:
    alone = HubSettings(data_dir=tmp_path, mqtt={"embedded": False, "auth_dir": str(tmp_path)})
    assert alone.mqtt.writes_broker_accounts
    node = HubSettings(
        data_dir=tmp_path, mqtt={"embedded": False}, cluster={"workers": 4, "worker": 3}
    )
    assert (node.cluster.workers, node.cluster.worker) == (4, 3)
