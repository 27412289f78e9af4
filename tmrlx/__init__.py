"""tmrlx: distributed real-time reinforcement learning (TMRL rebuilt on JAX/Flax and ZeroMQ).

The application layer (command line, demo, plot) lives here; the library and the roles are
installed beneath it as `tmrlx.common`, `tmrlx.actor`, `tmrlx.broker` and `tmrlx.learner`.
"""

__version__ = "0.1.0"
