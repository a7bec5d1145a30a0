"""Bridges between jobprogress and libraries people already use; each module imports its library itself.

- :mod:`jobprogress.contrib.tqdm`: a drop-in ``tqdm`` bar that also tracks the job
  (``pip install 'jobprogress[tqdm]'``).
"""
