"""Training in one process, as a launch does across processes but without Reverb or Launchpad (Acme's
run_offline_experiment in spirit): networks, the same batch cutting over episodes held in memory, and the
learner. Scripts and tests that train directly use this, so they train as the launcher does.
"""

from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import numpy as np

from data_pipeline import batches


def make_learner(
  builder: Any,
  observation_spec: Any,
  action_spec: Any,
  episodes: Sequence[Dict[str, np.ndarray]],
  success_examples: np.ndarray,
  seed: int,
  observation_stats: Optional[Dict[str, Sequence[float]]] = None,
  episode_reuse: int = 1,
) -> Tuple[Any, Any]:
  """(networks, learner) of `builder` for episodes of {'observation', 'action', 'is_terminal'}, seeded end to end."""
  networks = builder.make_networks(observation_spec, action_spec, observation_stats)
  iterator = batches.make_in_memory_iterator(
    list(episodes),
    builder.batch_kind,
    builder.config.batch_size,
    builder.config.discount,
    seed=seed,
    episode_reuse=episode_reuse,
  )
  return networks, builder.make_learner(networks, iterator, success_examples, jax.random.PRNGKey(seed))
