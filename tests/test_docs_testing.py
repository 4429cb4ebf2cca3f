"""docs/testing.md is a tutorial whose code is tested: every python block in it must be a verbatim excerpt of a
file under examples/, whose tests run in CI, so the page cannot drift from code that works."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_every_code_block_of_the_testing_tutorial_is_from_a_tested_example():
    page = (ROOT / "docs" / "testing.md").read_text()
    blocks = BLOCK.findall(page)
    examples = {path: path.read_text() for path in (ROOT / "examples").rglob("*.py")}
    assert len(blocks) >= 8
    for block in blocks:
        homes = [path.relative_to(ROOT) for path, text in examples.items() if block in text]
        assert homes, f"this block of docs/testing.md is in no file under examples/:\n{block}"
