"""Test set-up: offline, all tool state in a throwaway folder, tiny components built in code."""

from __future__ import annotations

import os
import tempfile

_SCRATCH = tempfile.mkdtemp(prefix="seppo-pytest-")
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HOME": os.path.join(_SCRATCH, "hf"),
    "MPLCONFIGDIR": os.path.join(_SCRATCH, "mpl"),
    "PREFECT_HOME": os.path.join(_SCRATCH, "prefect"),
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # a loaded 2-core CI box is slow
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """A tiny random-weight StableDiffusionPipeline saved in the real diffusers format."""
    from tests.dummy import save_dummy_pipeline

    return save_dummy_pipeline(tmp_path_factory.mktemp("tiny-sd"))
