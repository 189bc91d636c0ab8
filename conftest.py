"""pytest configuration shared by tests/ and the doctests in gradscope/.

One torch thread: the suite's tensors are small, and on a 2-core CI machine (or one
shared with other jobs) two OpenMP threads per tiny kernel cost far more than they give.
"""

import torch

torch.set_num_threads(1)
