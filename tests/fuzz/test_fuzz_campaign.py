"""CI's short, bounded, seeded campaign of the coverage-guided node fuzzer (tests/fuzz/fuzz_node.py); a long one
is the same command with ``-max_total_time``."""

import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).with_name("fuzz_node.py")


def test_a_bounded_fuzz_campaign_over_a_whole_node_finds_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=20000", "-seed=1", f"-artifact_prefix={tmp_path}/"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = "\n".join(done.stderr.splitlines()[-30:])
    assert done.returncode == 0, tail
    assert "Done 20000 runs" in done.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
