"""Training of the sequential gradient-transfer chain MFIF -> MEIF -> IVF (paper §3.1).

- :func:`train_and_evaluate`: one stage, end to end (``train.py`` calls it).
- :func:`make_train_step`: the pure, device-parallel train step of a stage.
- :func:`init_train_state`, :func:`make_optimizer`: the train state dict and Adam with clipping.
- :class:`DataParallel`: the data-parallel seam (``jax.pmap`` today).
"""

from fusionjax.train.loop import train_and_evaluate as train_and_evaluate
from fusionjax.train.parallel import AXIS_NAME as AXIS_NAME
from fusionjax.train.parallel import DataParallel as DataParallel
from fusionjax.train.state import init_train_state as init_train_state
from fusionjax.train.state import learning_rate_schedule as learning_rate_schedule
from fusionjax.train.state import make_optimizer as make_optimizer
from fusionjax.train.steps import LossWeights as LossWeights
from fusionjax.train.steps import fusion_loss as fusion_loss
from fusionjax.train.steps import make_train_step as make_train_step
