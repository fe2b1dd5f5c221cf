import os

# Tests run on CPU; keep thread counts small so the 2-core CI machine is not oversubscribed.
os.environ.setdefault("OMP_NUM_THREADS", "2")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """For modules of small tensors: one intra-op thread is as fast and never oversubscribes a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
