import numpy as np
import torch

from recembed.retrieval.hash_index import huge_page_copy, quantize_rows


def test_huge_page_copy_is_an_equal_independent_copy():
    vectors = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    copy = huge_page_copy(vectors[::2])  # a strided view comes back contiguous
    assert copy.is_contiguous() and copy.shape == (3, 4)
    assert torch.equal(copy, vectors[::2])
    copy[0, 0] = -1.0
    assert vectors[0, 0] == 0.0


def test_quantize_rows_scales_each_row_by_its_largest_magnitude():
    vectors = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [-254.0, 127.0, 1.0]])
    codes, scales = quantize_rows(vectors)
    assert codes.dtype == np.int8 and codes.flags.c_contiguous
    np.testing.assert_array_equal(codes, [[127, -64, 32], [0, 0, 0], [-127, 64, 0]])  # round half to even: 63.5 -> 64
    np.testing.assert_allclose(scales[[0, 2]], [1 / 127, 2.0], rtol=1e-6)
