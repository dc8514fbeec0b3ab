"""The objectives: loss terms and the functions the optimisers minimise.

Every objective follows :class:`multiscale.objectives.base.Objective`:
value and gradient (``__call__``), value only with a per-term breakdown
(:meth:`evaluate`), precision and tiling as attributes. A statistic joins by
adding a term here.
"""
