import os

# Tests run on CPU; keep thread counts small so the 2-core CI machine is not oversubscribed.
os.environ.setdefault("OMP_NUM_THREADS", "2")
