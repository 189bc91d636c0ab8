"""pytest configuration shared by tests/ and the doctests in gradscope/.

One torch thread: the suite's tensors are small, and on a 2-core CI machine (or one
shared with other jobs) two OpenMP threads per tiny kernel cost far more than they give.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One thread in every test, whatever a test before it set (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
