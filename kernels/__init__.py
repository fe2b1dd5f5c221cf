"""Triton kernels of depthinit and their launchers (installed as ``depthinit.kernels``).

This package imports torch and triton only; it never imports the ``depthinit`` API. Importing it needs
no GPU and no driver: nothing here queries a device or autotunes at import time.
"""
