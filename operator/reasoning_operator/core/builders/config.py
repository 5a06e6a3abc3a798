"""The run's ConfigMap: each stage's config, the same pydantic stage model the job reads with --config."""

from __future__ import annotations

from typing import Any

import yaml

from reasoning_operator.api import Stage, stage_configs

from ..run import CONFIG_MOUNT, Run


def config_file(stage: Stage) -> str:
    return f"{CONFIG_MOUNT}/{stage.value}.yaml"


def build_config_map(run: Run, server_url: str) -> dict[str, Any]:
    configs = stage_configs(run.spec, run.run_dir, server_url)
    data = {
        f"{stage.value}.yaml": yaml.safe_dump(getattr(configs, stage.value).to_wire(), sort_keys=False)
        for stage in Stage
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": run.metadata(run.config_map_name, component="config"),
        "data": data,
    }
