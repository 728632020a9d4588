"""Builds the optional compiled feature kernel, model-runner step and L2 book; the rest is in
pyproject.toml.

`optional=True`: without a C compiler or Python headers the install still succeeds and the
feature stage runs its pure-Python path (same results, slower; `ticktape bench` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "simulator.features._native",
            ["simulator/features/_native.c"],
            # No fused multiply-add, no fast-math: results must equal the Python path's bits.
            extra_compile_args=["-O2", "-std=c11", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        ),
        Extension(  # the model runners' per-prediction glue (onnx_runner.py, rule.py)
            "simulator.models._step",
            ["simulator/models/_step.c"],
            extra_compile_args=["-O2", "-std=c11", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        ),
        Extension(  # the L2 book of live mode (importers/book.py's twin)
            "simulator.importers._book",
            ["simulator/importers/_book.c"],
            extra_compile_args=["-O2", "-std=c11"],
            optional=True,
        ),
    ]
)
