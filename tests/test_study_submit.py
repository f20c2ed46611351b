"""`seppo study --submit`'s checks that need no Prefect server: the baseline the workers check out must be committed
and on the shared git remote; finished experiments are found on the remote by name and baseline."""

import os

import pytest

from tests.test_study_run import sh



def _repo(tmp_path):
    env = dict(os.environ)
    remote = tmp_path / "r.git"
    sh(["git", "init", "-q", "--bare", str(remote)], tmp_path, env)
    work = tmp_path / "w"
    work.mkdir()
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t.invalid"], ["git", "config", "user.name", "t"],
                ["git", "remote", "add", "origin", str(remote)]):
        sh(cmd, work, env)
    (work / "params.yaml").write_text("{}\n")
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "c"], work, env)
    return work, remote, env


def test_the_baseline_must_be_committed_and_on_the_shared_remote(tmp_path):
    from seppo.study.remote import _baseline, on_remote
    from seppo.study.runner import StudyError

    work, remote, env = _repo(tmp_path)
    with pytest.raises(StudyError, match="not on git remote origin: `git push origin` first"):
        _baseline(work, "origin")
    sh(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], work, env)
    head = sh(["git", "rev-parse", "HEAD"], work, env).strip()
    assert _baseline(work, "origin") == head
    (work / "params.yaml").write_text("{train: {lr: 1.0}}\n")
    with pytest.raises(StudyError, match="uncommitted changes.*params.yaml"):
        _baseline(work, "origin")
    # an experiment ref on the remote is found by name, on this baseline only
    sh(["git", "push", "-q", "origin", f"HEAD:refs/exps/{head[:2]}/{head[2:]}/none__seed0"], work, env)
    sh(["git", "push", "-q", "origin", "HEAD:refs/exps/ab/cdef/sign__seed0"], work, env)
    assert on_remote(work, "origin", head, ["none__seed0", "sign__seed0", "none__seed1"]) == {"none__seed0"}
