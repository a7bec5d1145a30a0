"""Bridges between jobprogress and libraries people already use; each module imports its library itself.

- :mod:`jobprogress.contrib.tqdm`: a drop-in ``tqdm`` (and ``trange``, with ``.auto`` and ``.asyncio``
  twins) that also tracks the job (the ``tqdm`` extra: ``pip install 'jobprogress-sdk[tqdm]'``, or
  ``pip install '.[tqdm]'`` in a clone until it is published).
- :mod:`jobprogress.contrib.rich`: rich's ``Progress`` and ``track()``, each task also a job (the
  ``rich`` extra).
"""
