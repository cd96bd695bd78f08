"""The data of a study: prepared once per machine into a cache, then handed to each trial as arrays.

    python -m trainables.datasets prepare --config conf/quick.yaml   # every data set of the study

- :mod:`~trainables.datasets.registry`: the one place that knows which data sets exist: checks their
  files before a study runs, prepares them, and builds the arrays of one trial.
- :mod:`~trainables.datasets.arrays`: what a trial gets (:class:`TrialData`, :class:`TestCondition`).
- :mod:`~trainables.datasets.synthetic`: the synthetic texture data set (generate, prepare, preview).
- :mod:`~trainables.datasets.medical`: medical data sets from the user's disk (layouts, read, prepare).
- :mod:`~trainables.datasets.perturb`: the out-of-domain test levels.
- :mod:`~trainables.datasets.texture`: texture similarity (TS), pure numpy.
- :mod:`~trainables.datasets.cache`: the content-addressed, crash-safe cache they are prepared into.

Nothing here imports torch: the arrays are numpy, and the trial turns them into tensors.
"""
