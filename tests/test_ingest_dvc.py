"""A pipeline whose ingest.source is a folder outside the project: planned, run and tracked by DVC."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from seppo.world.pickapic import PICKAPIC_SCHEMA
from tests.test_data_ingest import row

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.mark.slow
def test_an_external_mirror_plans_runs_and_invalidates_ingest_without_the_world(tmp_path):
    mirror, proj = tmp_path / "mirror", tmp_path / "proj"
    mirror.mkdir()
    for k in range(2):
        rows = [row(10 * k + i, caption=f"caption {k} {i}") for i in range(3)]
        pq.write_table(pa.Table.from_pylist(rows, schema=PICKAPIC_SCHEMA), mirror / f"train-0000{k}-of-00002.parquet")
    (mirror / "README.md").write_text("a mirror\n")
    proj.mkdir()
    shutil.copytree(ROOT / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"]["source"] = str(mirror)
    # the embedded PickScore is trained on the embedded world's pairs: a mirror needs the released one
    params["scorer_model"]["enabled"] = False
    params["evaluate"]["scorers"] = ["shapeland_utility"]
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", PYTHONPATH=str(proj / "src"),
               DVC_NO_ANALYTICS="1")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t.invalid"],
                ["git", "config", "user.name", "t"]):
        sh(cmd, proj, env)
    sh([str(BIN / "dvc"), "init", "-q"], proj, env)
    sh([sys.executable, "-m", "seppo.cli", "plan"], proj, env)
    stage = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]["ingest"]
    assert stage["deps"][0] == str(mirror)

    out = sh([str(BIN / "dvc"), "repro", "ingest"], proj, env)
    assert "'world'" not in out and not (proj / "data" / "world").exists()  # the world never ran
    counts = yaml.safe_load((proj / "data" / "ingest" / "counts.json").read_text())
    assert (counts["rows_in"], counts["kept"]) == (6, 6)
    assert [Path(x["path"]).name for x in counts["ignored_files"]] == ["README.md"]
    lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]["ingest"]
    assert lock["deps"][0]["path"] == str(mirror) and lock["params"]["params.yaml"]["ingest.source"] == str(mirror)
    assert "ingest" not in sh([str(BIN / "dvc"), "status", "ingest"], proj, env)

    # a touched shard makes ingest stale, and a re-run reads the new rows
    rows = [row(30 + i, caption=f"new {i}") for i in range(2)]
    pq.write_table(pa.Table.from_pylist(rows, schema=PICKAPIC_SCHEMA), mirror / "train-00001-of-00002.parquet")
    status = sh([str(BIN / "dvc"), "status", "ingest"], proj, env)
    assert "ingest" in status and "modified" in status and str(mirror) in status
    sh([str(BIN / "dvc"), "repro", "ingest"], proj, env)
    counts = yaml.safe_load((proj / "data" / "ingest" / "counts.json").read_text())
    assert (counts["rows_in"], counts["kept"]) == (5, 5)
    assert "ingest" not in sh([str(BIN / "dvc"), "status", "ingest"], proj, env)


def test_a_flow_override_of_the_ingest_source_replans_the_graph(tmp_path):
    from flows.pipeline import _planned_dvc_yaml

    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(ROOT / "params.yaml", proj / "params.yaml")
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    assert _planned_dvc_yaml({"train.lr": 3e-5}, str(proj)) is None  # the graph does not change
    planned = _planned_dvc_yaml({"ingest.source": str(tmp_path / "mirror"), "ingest.revision": None,
                                 "scorer_model.enabled": False, "evaluate.scorers": ["shapeland_utility"]}, str(proj))
    ingest = yaml.safe_load(planned)["stages"]["ingest"]
    assert ingest["deps"][0] == str(tmp_path / "mirror") and "scorer_model" not in yaml.safe_load(planned)["stages"]


def _readme_real_data_commands() -> tuple[list[str], list[str]]:
    """The README's command lines for a mirror: the fenced block (params.yaml edited) and the experiment form."""
    import re

    text = (ROOT / "README.md").read_text()
    section = text.split("## Data: a real Pick-a-Pic v2 mirror", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    in_params = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]
    as_experiment = re.findall(r"`((?:seppo plan --set|dvc exp run -S) ingest\.source=[^`]+)`", section)
    return in_params, as_experiment


@pytest.mark.slow
def test_the_readme_real_data_commands_run_as_written(tmp_path):
    """README "Data: a real Pick-a-Pic v2 mirror": ingest.source is the one setting; its commands run as written
    (only the mirror's path is ours, and the experiment form is limited to the validate target)."""
    in_params, as_experiment = _readme_real_data_commands()
    assert in_params[:2] == ["seppo plan", "dvc repro validate"] and len(as_experiment) == 2, (in_params, as_experiment)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rows = [row(i, caption=f"caption {i}") for i in range(6)]
    pq.write_table(pa.Table.from_pylist(rows, schema=PICKAPIC_SCHEMA), mirror / "train-00000-of-00001.parquet")
    env = dict(os.environ, PYTHONPATH=None, DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="false")
    env = {k: v for k, v in env.items() if v is not None}
    for form, lines in (("params", in_params), ("experiment", as_experiment)):
        proj = tmp_path / form
        proj.mkdir()
        shutil.copytree(ROOT / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        text = (ROOT / "params.yaml").read_text()
        if form == "params":  # "Point ingest.source in params.yaml at your copy": that line and nothing else
            text = text.replace("  source: data/world/pickapic", f"  source: {mirror}", 1)
            assert str(mirror) in text
        (proj / "params.yaml").write_text(text)
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
        env["PYTHONPATH"] = str(proj / "src")
        for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t.invalid"],
                    ["git", "config", "user.name", "t"]):
            sh(cmd, proj, env)
        sh([str(BIN / "dvc"), "init", "-q"], proj, env)
        sh([sys.executable, "-m", "seppo.cli", "plan"], proj, env)  # the embedded default's graph, as committed
        sh(["git", "add", "-A"], proj, env)
        sh(["git", "commit", "-qm", "project"], proj, env)
        for line in lines:
            line = line.replace("/data/pickapic_v2/data", str(mirror)).replace("/data/mirror", str(mirror))
            argv = line.split()
            if argv[:3] == ["dvc", "exp", "run"]:
                argv += ["validate"]  # the whole pipeline would train on 6 rows: ingest + validate are the point
            out = sh([str(BIN / argv[0]), *argv[1:]], proj, env)
            if argv[0] == "seppo":
                stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
                assert stages["ingest"]["deps"][0] == str(mirror) and "scorer_model" not in stages, line
        if form == "params":
            assert "ingest" not in out  # `dvc status ingest`: up to date
            counts = yaml.safe_load((proj / "data/ingest/counts.json").read_text())
            assert (counts["rows_in"], counts["kept"]) == (6, 6)
            assert not (proj / "data/world").exists()  # the embedded world never ran
        else:
            shown = sh([str(BIN / "dvc"), "exp", "show", "--json"], proj, env)
            assert str(mirror) in shown  # the experiment recorded the mirror as its ingest.source
