"""Bridges between jobprogress and libraries people already use; each module imports its library itself.

- :mod:`jobprogress.contrib.tqdm`: a drop-in ``tqdm`` (and ``trange``, with ``.auto`` and ``.asyncio``
  twins) that also tracks the job (the ``tqdm`` extra: ``pip install 'jobprogress-sdk[tqdm]'``, or
  ``pip install '.[tqdm]'`` in a clone until it is published).
- :mod:`jobprogress.contrib.rich`: rich's ``Progress`` and ``track()``, each task also a job (the
  ``rich`` extra).
- :mod:`jobprogress.contrib.celery`: ``install(app)``, one job per Celery group, a worker row per task
  (the ``celery`` extra).
- :mod:`jobprogress.contrib.dask`: ``JobprogressPlugin``, a ``distributed`` worker plugin; one job per
  ``client.map``, a worker row per task (the ``dask`` extra).
"""
