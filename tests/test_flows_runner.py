"""flows/runner.py and flows/overrides.py without a Prefect server: log streaming, retry policy, overrides."""

import sys
from pathlib import Path

import pytest

from flows import overrides
from flows.runner import BadOverrides, CommandFailed, LineSummariser, is_retryable, stream


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_lines_pass_through_and_stage_boundaries_stand_out():
    got = []
    s = LineSummariser(got.append)
    s.feed("Reproducing experiment 'x'\nRunning stage 'eval_round_1':\n> seppo eval-generate\nhal")
    s.feed("f a line\r\n\n")
    s.close()
    assert got == ["Reproducing experiment 'x'", "==== stage eval_round_1 ==== Running stage 'eval_round_1':",
                   "> seppo eval-generate", "half a line"]


def test_progress_bars_are_throttled_and_their_last_state_kept():
    clock, got = Clock(), []
    s = LineSummariser(got.append, every=10.0, clock=clock)
    for i in range(101):  # a tqdm bar redrawn 101 times over 50 s
        clock.t = i * 0.5
        s.feed(f"gen: {i}%|###|\r")
    s.feed("gen: 100%|###| done\n")
    s.feed("next line\n")
    s.close()
    # t = 0, 10, 20, 30, 40, 50 s -> bars 0, 20, 40, 60, 80, 100; then the bar's final newline state
    assert got == [f"gen: {i}%|###|" for i in (0, 20, 40, 60, 80, 100)] + ["gen: 100%|###| done", "next line"]


def test_a_pending_bar_state_is_flushed_before_the_next_line_and_at_the_end():
    clock, got = Clock(), []
    s = LineSummariser(got.append, every=10.0, clock=clock)
    s.feed("a 1%\ra 2%\ra 3%\rERROR: boom\nb 1%\rb 2%\r")
    s.close()
    # throttling is per stream: within 10 s of "a 1%" the second bar shows only its final state
    assert got == ["a 1%", "a 3%", "ERROR: boom", "b 2%"]


def test_stream_emits_while_running_and_raises_with_the_tail(tmp_path):
    got = []
    code = "import sys\nprint('one', flush=True)\nprint('two', file=sys.stderr, flush=True)\nsys.exit(3)\n"
    with pytest.raises(CommandFailed) as err:
        stream([sys.executable, "-c", code], str(tmp_path), got.append)
    assert got == ["one", "two"] and err.value.returncode == 3 and err.value.tail == "one\ntwo"
    assert not is_retryable(err.value)


@pytest.mark.parametrize("exc, retry", [
    (CommandFailed(["dvc", "repro"], 1, "ERROR: Unable to acquire lock. Most likely another DVC process is running"), True),
    (CommandFailed(["dvc", "repro"], 2, "error: params.yaml: invalid parameters\n  train.lr: ..."), False),
    (CommandFailed(["dvc", "repro"], 1, "ERROR: failed to reproduce 'validate': quarantined rows exceed"), False),
    (BadOverrides("train.lrr: unknown key"), False),
    (ConnectionResetError(104, "reset"), True),
    (TimeoutError("slow"), True),
    (OSError(5, "I/O error"), True),
    (FileNotFoundError(2, "no dvc"), False),
    (RuntimeError("a bug"), False),
])
def test_one_retry_policy(exc, retry):
    assert is_retryable(exc) is retry


PARAMS = "train:\n  lr: 0.0001\n  criterion: sign\n"


@pytest.fixture()
def params_file(tmp_path) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(PARAMS)
    return p


def test_valid_overrides_become_dvc_set_args(params_file):
    args = overrides.validate({"train.lr": 3e-5, "train.criterion": "indicator", "+train.rounds": 2},
                              params_file)
    # present keys plain (DVC refuses '+' on them), absent known keys with '+', values as JSON
    assert args == ["+train.rounds=2", 'train.criterion="indicator"', "train.lr=3e-05"]
    assert params_file.read_text() == PARAMS


@pytest.mark.parametrize("bad, needle", [
    ({"train.criterion": "foo"}, "train.criterion: Input should be 'sign'"),
    ({"+train.lrr": 1}, "train.lrr: unknown key; did you mean train.lr? allowed keys here:"),
    ({"train.lrr": 1}, "train.lrr: unknown key"),
    ({"trian.lr": 1}, "trian: unknown key; did you mean train? allowed keys here: base_model"),
    ({"train.lr": "fast"}, "train.lr: Input should be a valid number"),
    ({"train.lr.x": 1}, "train.lr is a value, not a section"),
    ({"train lr": 1}, "expected a dotted params key"),
])
def test_bad_overrides_name_the_key_and_what_is_allowed(params_file, bad, needle):
    with pytest.raises(BadOverrides, match=".*") as err:
        overrides.validate(bad, params_file)
    assert needle in str(err.value)
    assert params_file.read_text() == PARAMS


def test_allowed_values_are_listed(params_file):
    with pytest.raises(BadOverrides) as err:
        overrides.validate({"train.criterion": "foo"}, params_file)
    assert "'indicator'" in str(err.value) and "got 'foo'" in str(err.value)
    with pytest.raises(BadOverrides) as err:
        overrides.validate({"+train.lrr": 1}, params_file)
    assert " lr," in str(err.value)  # the keys allowed in train, so the typo is visible


def test_experiment_names():
    assert overrides.check_experiment_name("lr3e-5") == "lr3e-5"
    for bad in ["", "-x", "a b", "a/b", "x" * 65]:
        with pytest.raises(BadOverrides):
            overrides.check_experiment_name(bad)


DVC_YAML = """stages:
  report:
    cmd: python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['train']['lr'])" > out.txt
    params: [train.lr]
    outs: [out.txt]
"""


@pytest.mark.slow
def test_experiment_runs_in_a_temp_copy_with_its_own_plan_and_leaves_the_workspace(tmp_path):
    """dvc_exp_run's own code (no server): the re-planned dvc.yaml reaches the experiment only."""
    import subprocess

    from flows.pipeline import dvc_exp_run, experiment_rev

    bin_ = Path(sys.executable).parent
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "params.yaml").write_text("train:\n  lr: 0.1\n")
    (proj / "dvc.yaml").write_text(DVC_YAML)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t.invalid"], ["git", "config", "user.name", "t"],
                [str(bin_ / "dvc"), "init", "-q"], [str(bin_ / "dvc"), "repro", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=proj, check=True, capture_output=True)
    before = {p.name: p.read_bytes() for p in proj.iterdir() if p.is_file()}
    planned = DVC_YAML.replace("> out.txt", "> out.txt && echo planned >> out.txt").encode()

    rev = dvc_exp_run.fn(["train.lr=0.5"], "t1", planned, str(proj))

    assert {p.name: p.read_bytes() for p in proj.iterdir() if p.is_file()} == before
    assert subprocess.run(["git", "status", "--porcelain"], cwd=proj, capture_output=True, text=True).stdout == ""
    show = lambda path: subprocess.run(["git", "show", f"{rev}:{path}"], cwd=proj, capture_output=True).stdout  # noqa: E731
    assert show("dvc.yaml") == planned and b"lr: 0.5" in show("params.yaml")
    import dvc.api

    assert dvc.api.read("out.txt", repo=str(proj), rev=rev) == "0.5\nplanned\n"
    assert experiment_rev("t1", str(proj)) == rev and experiment_rev("t2", str(proj)) is None


def test_prefect_retry_condition_reads_the_failed_states_exception():
    import asyncio

    from prefect.states import exception_to_failed_state

    from flows.runner import retry_condition

    for exc, retry in [(BadOverrides("train.lrr: unknown key"), False), (OSError(5, "I/O error"), True),
                       (CommandFailed(["dvc", "repro"], 1, "ERROR: Unable to acquire lock."), True),
                       (CommandFailed(["dvc", "repro"], 2, "error: params.yaml: invalid parameters"), False)]:
        state = asyncio.run(exception_to_failed_state(exc))
        assert retry_condition(None, None, state) is retry, exc


def test_the_video_flow_runs_each_arm_round_after_round_from_the_plan(tmp_path):
    from flows.pipeline import video_round_stages
    from seppo.config import parse_params
    from seppo.planning.dvc import render_video

    (tmp_path / "video").mkdir()
    (tmp_path / "video/dvc.yaml").write_text(render_video(parse_params(
        {"train": {"rounds": 2}, "video": {"arms": ["seppo", "dpo"]}})))
    groups = video_round_stages(str(tmp_path))
    v = "video/dvc.yaml:"
    assert groups == [[f"{v}video_select_1", f"{v}video_refsamples_1", f"{v}video_train_1"],
                      [f"{v}video_dpo_select_1", f"{v}video_dpo_train_1"],
                      [f"{v}video_select_2", f"{v}video_refsamples_2", f"{v}video_train_2"],
                      [f"{v}video_dpo_select_2", f"{v}video_dpo_train_2"]]
