"""Row-band schedules (mcugen/row_bands.py) on the host: the banded C at the tightest budget
and half-way to the layer-by-layer arena bit-exact with the NumPy reference and TFLM, and
clean under ASan and UBSan. (The search, QEMU, the command line and the bit-exact host cases
of row_band_cases.HOST_CASES_THERE: test_row_bands.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import standard_inputs, tflm_outputs
from hostc import run_sanitized
from row_band_cases import (ALL_MODELS, HOST_CASES_THERE, assert_bit_exact_on_the_host,
                            host_build, tightest)
from row_band_cases import builds, models  # noqa: F401  (fixtures)


@pytest.mark.tensorflow
@pytest.mark.parametrize("budget", ["tightest", "half-way"])
@pytest.mark.parametrize("case", [case for case in ALL_MODELS if case not in HOST_CASES_THERE])
def test_banded_c_is_bit_exact_on_the_host(case, budget, models, builds, tmp_path):
    assert_bit_exact_on_the_host(case, budget, models, builds, tmp_path)


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["v1_a0.25_96", "v2_a0.5_48x40x1", "v3-small_a0.5_64x64x1"])
def test_banded_c_is_clean_under_sanitizers(case, models, builds, tmp_path):
    max_ram = tightest(case, "host")
    result = host_build(case, max_ram, models, builds)
    graph = result.compiled.graph
    inputs = standard_inputs(graph.input.size, random_count=1)
    outputs = run_sanitized(result.out_dir, "model", graph.input.size, graph.output.size,
                            inputs, tmp_path)
    np.testing.assert_array_equal(outputs, tflm_outputs(result.tflite, inputs))
