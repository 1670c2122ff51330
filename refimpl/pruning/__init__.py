"""Pruning: criteria that choose which weights or units to remove, and the methods built on them.

Weight pruning (chapter 3): magnitude pruning, Optimal Brain Damage, Optimal Brain Surgeon,
lottery tickets, sparse evolutionary training and structured sparsity learning. Masks are
installed with the network core's :class:`refimpl.nn.Mask` parametrization.

Unit pruning (chapter 4): neuron and filter criteria, selection rules and ThiNet; the surgery
that removes units for real lives in :mod:`refimpl.surgery` and is re-exported here.
"""

from ..surgery.units import *  # noqa: F401,F403 - the unit surgery, re-exported here
from .autopruner import *  # noqa: F401,F403
from .early import *  # noqa: F401,F403
from .filter_criteria import *  # noqa: F401,F403
from .gradient_criteria import *  # noqa: F401,F403
from .group_lasso import *  # noqa: F401,F403
from .groupwise import *  # noqa: F401,F403
from .learned_units import *  # noqa: F401,F403
from .lottery import *  # noqa: F401,F403
from .magnitude import *  # noqa: F401,F403
from .neuron_criteria import *  # noqa: F401,F403
from .obd import *  # noqa: F401,F403
from .obs import *  # noqa: F401,F403
from .one_shot import *  # noqa: F401,F403
from .schedule import *  # noqa: F401,F403
from .selection import *  # noqa: F401,F403
from .sparse_evolution import *  # noqa: F401,F403
from .thinet import *  # noqa: F401,F403
from .units import *  # noqa: F401,F403
