"""Builds the optional C accelerator of the tracker hot path; without a compiler the pure-Python twin is used."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("jobprogress._speedups", ["src/jobprogress/_speedups.c"], optional=True),
    ]
)
