"""A local DVC remote: outputs pushed, the cache and workspace wiped, everything pulled back."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DVC = str(Path(sys.executable).parent / "dvc")


def sh(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, env=dict(os.environ))


@pytest.mark.slow
def test_push_and_pull_through_a_local_remote(tmp_path):
    proj, remote = tmp_path / "proj", tmp_path / "remote"
    proj.mkdir()
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t.invalid"], ["git", "config", "user.name", "t"]):
        sh(cmd, proj)
    sh([DVC, "init", "-q"], proj)
    sh([DVC, "config", "core.analytics", "false"], proj)
    sh([DVC, "remote", "add", "-d", "local", str(remote)], proj)
    (proj / "params.yaml").write_text("n: 3\n")
    sh([DVC, "stage", "add", "-n", "make", "-p", "n", "-o", "models/ckpt",
        "python -c \"import pathlib,yaml; n=yaml.safe_load(open('params.yaml'))['n']; "
        "p=pathlib.Path('models/ckpt'); p.mkdir(parents=True); (p/'w.bin').write_bytes(bytes(range(n)))\""], proj)
    sh([DVC, "repro"], proj)
    before = (proj / "models/ckpt/w.bin").read_bytes()
    sh([DVC, "push"], proj)
    assert any(remote.rglob("*")), "nothing pushed"
    shutil.rmtree(proj / ".dvc" / "cache")
    shutil.rmtree(proj / "models")
    sh([DVC, "pull"], proj)
    assert (proj / "models/ckpt/w.bin").read_bytes() == before == bytes(range(3))
    assert "up to date" in sh([DVC, "status"], proj).stdout
