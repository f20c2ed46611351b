"""Progress bars: counts and ETA on stderr, only on the main process."""

from seppo.progress import progress


def test_bar_counts_and_shows_an_eta(capfd):
    with progress(4, "stage-x", unit="img") as bar:
        bar.update(1)
        bar.update(3)
    err = capfd.readouterr().err
    assert "stage-x: 100%" in err and "4/4" in err and "img/s" in err and "<00:00" in err  # elapsed<remaining


def test_only_the_main_process_draws(monkeypatch, capfd):
    monkeypatch.setenv("RANK", "1")
    with progress(2, "stage-y") as bar:
        bar.update(2)
    assert bar.disable and "stage-y" not in capfd.readouterr().err
