"""The README's demo runs end to end and every event it records arrives exactly once."""

from __future__ import annotations

import subprocess

from helpers import PYTHON, ROOT, clean_env


def test_the_demo_delivers_every_event_it_records(tmp_path):
    env = clean_env(tmp_path)
    result = subprocess.run(
        [PYTHON, str(ROOT / "scripts" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    down = result.stdout.split("== 1")[1].split("== 2")[0]
    assert "last error:   connection-refused at " in down
    assert "nothing accepts connections at the receiver's address" in down
    spool = result.stdout.split("== 2")[1].split("== 3")[0]
    assert "<redacted>" in spool and "s3cr3t" not in spool
    assert "received 45 distinct (0 duplicate deliveries), 0 left in the spool" in result.stdout
    assert "served 54 API requests, counted 54 of them in what arrived" in result.stdout
    api = result.stdout.split("== 6")[1]
    assert "/api/projects/{project_id}/" in api
    assert not any(word in api.split("api_request", 1)[1] for word in ("sales", "ada", "s3cr3t"))
