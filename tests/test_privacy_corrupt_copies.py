"""Item 9 of issue 12: a spool moved aside as `telemetry.db.corrupt-<time>` still holds events;
every purge removes those copies too, and nothing else."""

from __future__ import annotations

import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from visivo_telemetry import Telemetry
from visivo_telemetry import _spool as spool

_FOLDERS = st.text("abc[]*?{}-_ .", min_size=1, max_size=12).filter(
    lambda t: t.strip(" .") == t and t not in (".", "..")
)
_STAMPS = st.text("0123456789TZ.-[]*?", min_size=0, max_size=20)


@settings(max_examples=60, deadline=None)
@given(_FOLDERS, st.lists(_STAMPS, min_size=1, max_size=4, unique=True))
def test_purge_removes_every_copy_set_aside_even_in_a_folder_with_glob_characters(folder, stamps):
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, folder)
        os.mkdir(base)
        db = os.path.join(base, "telemetry.db")
        keep = ["telemetry.dbx", "config.yml", "other.db.corrupt-1", "telemetry.db-corrupt-1"]
        for name in ["telemetry.db", *(f"telemetry.db.corrupt-{s}" for s in stamps), *keep]:
            with open(os.path.join(base, name), "w") as f:
                f.write("events")

        assert spool.purge(db) is True
        assert sorted(os.listdir(base)) == sorted(keep)


def test_an_opted_out_host_deletes_the_copies_set_aside(home, project, monkeypatch):
    visivo = home / ".visivo"
    visivo.mkdir()
    (visivo / "telemetry.db").write_text("x")
    (visivo / "telemetry.db.corrupt-20261202T120000Z").write_text("events")
    monkeypatch.setenv("VISIVO_TELEMETRY_DISABLED", "1")

    Telemetry("1.4.0", project_dir=project, api_key="phc_test_key")

    assert [p.name for p in visivo.iterdir() if "telemetry.db" in p.name] == []
