"""Applications built on the library: the demo, the paper reproductions, the built-in models, the benchmark runner."""
