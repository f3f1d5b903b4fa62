"""Training-side code: point-sampled mask losses, Hungarian / separate matching, the SEEM criterion.

Nothing here is imported by ``import seem``; ``seem.train.matcher`` needs SciPy (imported lazily).
Official sources: ``modeling/modules/{point_features,matcher,criterion}.py`` (SEEM-REFERENCE.md §2).
"""
