import platform
import sys

from setuptools import setup

_triton = "triton>=3.0" if (sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")) else None

setup(
    name="depthinit",
    version="0.1.0",
    description="Depth-aware initialization and single-pass variance monitoring for deep networks (PyTorch + Triton)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["depthinit", "depthinit.kernels", "depthinit.repro", "depthinit.integrations"],
    package_dir={"depthinit": "depthinit", "depthinit.kernels": "kernels"},
    package_data={"depthinit.kernels": ["*.c"]},
    install_requires=["torch>=2.4", "numpy"] + ([_triton] if _triton else []),
    extras_require={
        "dev": [
            "pytest",
            "pytest-benchmark",
            "hypothesis",
            "scipy",
            "ruff",
            "scikit-learn",
            "matplotlib",
            "tensorboard",
            # peers whose own init the plans are compared with (tests/test_peers.py)
            "transformers>=4.56",
            "accelerate",
            "torchtitan",
            "ai2-olmo-core",
            # trainers and loggers the integrations plug into (tests/test_integrations*.py)
            "lightning",
            "wandb",
        ],
        "tb": ["tensorboard"],
        "plots": ["matplotlib"],
        "data": ["scikit-learn"],
        "wandb": ["wandb"],
        "lightning": ["lightning"],
        "transformers": ["transformers", "accelerate"],
    },
    entry_points={"console_scripts": ["depthinit = depthinit.cli:main"]},
)
