"""Training and evaluation data: the synthetic scene engine (:mod:`seem.data.scenes`), prompt simulation
(:mod:`seem.data.shapes`) and dataset readers. Import the submodule you need; this package imports none."""
