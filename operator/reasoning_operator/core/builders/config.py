"""The run's ConfigMap: each stage's config, the same pydantic stage model the job reads with --config."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import yaml

from reasoning_operator.api import Stage, stage_configs
from reasoning_operator.api.contract import config_file_name

from ..run import Run
from ..stage_cache import output_dirs

#: Rendered stage configs by everything they are made of (spec, run directory, server URL): rendering them
#: was the largest share of a reconcile's CPU (every reconcile plans the ConfigMap), the key is cheap.
_RENDERED: OrderedDict[tuple[str, str, str], dict[str, str]] = OrderedDict()
_RENDERED_MAX = 4096
_LOCK = threading.Lock()


#: libyaml's emitter when PyYAML has it: the same text as yaml.safe_dump (tested), ten times faster.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _render(run: Run, server_url: str) -> dict[str, str]:
    curated, trained = output_dirs(run)
    configs = stage_configs(run.spec, run.run_dir, server_url, curated_dir=curated, trained_dir=trained)
    return {
        config_file_name(stage): yaml.dump(config.to_wire(), Dumper=_DUMPER, sort_keys=False)
        for stage in Stage
        if (config := configs.get(stage)) is not None
    }


def build_config_map(run: Run, server_url: str) -> dict[str, Any]:
    key = (run.spec.model_dump_json(), run.run_dir, server_url)
    with _LOCK:
        data = _RENDERED.get(key)
        if data is not None:
            _RENDERED.move_to_end(key)
    if data is None:
        data = _render(run, server_url)
        with _LOCK:
            _RENDERED[key] = data
            while len(_RENDERED) > _RENDERED_MAX:
                _RENDERED.popitem(last=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": run.metadata(run.config_map_name, component="config"),
        "data": dict(data),
    }
