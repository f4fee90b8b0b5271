"""fusionjax: general image fusion (multi-focus, multi-exposure, infrared-visible, medical) in JAX.

Re-implements the fusion-rule unfolding networks FRUFN and EFRUFN and their sequential
gradient-transfer training (MFIF -> MEIF -> IVF). Sub-packages:

- ``fusionjax.deq``: a standalone deep-equilibrium fixed-point solver (pure JAX + jaxopt).
- ``fusionjax.models``: FRUFN, EFRUFN, their ablation variants and ColorNet (Flax linen).
- ``fusionjax.data``: benchmark readers, synthetic pair generators and the training pipeline.
- ``fusionjax.metrics``: fusion quality metrics in two conventions (``clean`` and ``paper``).
"""

__version__ = "0.1.0"
