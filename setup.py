from setuptools import setup

# Extras: what each optional feature needs (`pip install "depthinit[demo]"`). Keep one entry a line.
PLOTS = ["matplotlib"]
DATA = ["scikit-learn"]
EXTRAS = {
    "plots": PLOTS,  # depthinit plot, probe --plot, the figures of demo and repro
    "data": DATA,  # the bundled digits / wine datasets
    "demo": PLOTS + DATA,  # depthinit demo (and the repro studies)
    "tb": ["tensorboard"],  # the TensorBoard sink
    "wandb": ["wandb"],  # the WandB sink
    "lightning": ["lightning"],  # depthinit.integrations.lightning
    "transformers": ["transformers", "accelerate"],  # depthinit.integrations.transformers
    "dev": [  # the test suite
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
}

setup(
    name="depthinit",
    version="0.1.0",
    description="Depth-aware initialization and single-pass variance monitoring for deep networks (PyTorch + Triton)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["depthinit", "depthinit.cli", "depthinit.kernels", "depthinit.monitor", "depthinit.repro",
              "depthinit.integrations"],
    package_dir={"depthinit": "depthinit", "depthinit.kernels": "kernels"},
    package_data={"depthinit.kernels": ["*.c"]},
    install_requires=[
        "torch>=2.4",
        "numpy",
        # The GPU kernels; where triton has no wheel (macOS, ARM) the torch paths run instead. A marker, not
        # a build-time decision: one py3-none-any wheel is right on every platform.
        'triton>=3.0; sys_platform == "linux" and platform_machine == "x86_64"',
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["depthinit = depthinit.cli:main"]},
)
