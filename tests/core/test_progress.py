"""Long loops report progress: a bar on a terminal, a line now and then in a log file, or nothing."""

from interp.progress import mode, track


def test_lines_mode_prints_counts_and_time_left(monkeypatch, capsys):
    monkeypatch.setenv("INTERP_PROGRESS", "lines")
    monkeypatch.setenv("INTERP_PROGRESS_EVERY", "0")
    assert mode() == "lines"
    assert list(track([10, 20, 30], "edits", unit="edit")) == [10, 20, 30]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "\r" not in "".join(err)  # not after the last item: the loop's own line follows
    assert err[0].startswith("  edits: 1/3 edits (33%),") and "left" in err[0]
    assert list(track([1, 2], "oracle", unit="batch")) == [1, 2]  # English plurals
    assert capsys.readouterr().err.splitlines()[0].startswith("  oracle: 1/2 batches (50%),")
    assert list(track(iter("ab"), "chars")) == ["a", "b"]  # no length: counts only
    assert capsys.readouterr().err.splitlines() == ["  chars: 1 item, 0s so far", "  chars: 2 items, 0s so far"]


def test_lines_wait_for_the_interval_and_off_is_silent(monkeypatch, capsys):
    monkeypatch.setenv("INTERP_PROGRESS", "lines")
    monkeypatch.setenv("INTERP_PROGRESS_EVERY", "3600")
    assert list(track(range(5), "quick")) == list(range(5))
    monkeypatch.setenv("INTERP_PROGRESS", "0")
    assert mode() == "off" and list(track(range(5), "quiet")) == list(range(5))
    monkeypatch.setenv("INTERP_PROGRESS", "lines")
    monkeypatch.setenv("INTERP_PROGRESS_EVERY", "0")
    assert list(track(range(3), "disabled", disable=True)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
