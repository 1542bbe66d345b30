"""The CLI's outputs on a few samples, compared whole with tests/golden/ (see tests/golden.py)."""

import pytest

import golden


@pytest.mark.parametrize("case", sorted(golden.CASES))
def test_output_is_the_golden_one(case):
    out, status = golden.run(case)
    want = (golden.GOLDEN / f"{case}.out").read_text()
    assert status == int((golden.GOLDEN / f"{case}.status").read_text())
    assert out == want, f"{case}: the output changed; if that was meant, run: python3 tests/golden.py --update"
