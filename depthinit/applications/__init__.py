"""What is built on the library: the demo, the reproductions, the built-in models, datasets, the bench runner.

* :mod:`.demo` — ``depthinit demo``: probe, train with the monitor on, write a report;
* :mod:`.repro` — ``depthinit repro <study>``: the reproductions of the seed papers' studies;
* :mod:`.training` — the one classifier training loop, optimizer factory and evaluation they share;
* :mod:`.models` — the built-in MLP and GPT-2-style models and the ``kind:key=value`` spec parser;
* :mod:`.data` — the bundled digits / wine datasets and a local CIFAR-10 reader;
* :mod:`.bench` — ``depthinit bench``: runs the ``bench/`` scripts and reads the results they save.

Imports go one way: :mod:`depthinit.cli` uses these modules, these use the library (``depthinit.*``), and
the library never imports them.
"""
