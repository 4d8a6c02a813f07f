"""Someone else's robot: an RLDS dataset written by TFDS's own builder API and a gymnasium env, for the tests.

A point mass on a plane steers towards a goal. The dataset ('foreign_robot', configs 'unit' and 'wide') has
what datasets from the TFDS catalog have and laeo's own lack: nested dict observations ('state', float64, and
a 'camera' image), float64 actions, variable-length episodes, some ending in a terminal step, an 'is_success'
step flag and a flag that is never true ('is_collision'). Under 'wide', the second action dimension is in
[0, 4] rather than [-1, 1]. `make_env` is the same robot as a gymnasium env (info['is_success']); it refuses
actions outside its action space.
"""

import gymnasium
import numpy as np
import tensorflow_datasets as tfds

GOAL = np.array([0.5, 0.5])
SUCCESS_RADIUS = 0.25
MAX_STEPS = 12  # Actions of the longest episode.
WIDE_HIGH = 4.0  # Under 'wide', the second action dimension spans [0, WIDE_HIGH].


def action_bounds(wide: bool):
  return np.array([-1.0, 0.0 if wide else -1.0]), np.array([1.0, WIDE_HIGH if wide else 1.0])


def _unit_action(action, wide: bool) -> np.ndarray:
  low, high = action_bounds(wide)
  return 2.0 * (np.asarray(action, np.float64) - low) / (high - low) - 1.0


class _Robot:
  def __init__(self, rng):
    self.position = rng.uniform(-1.0, 1.0, 2)
    self.velocity = np.zeros(2)
    self.t = 0

  def state(self) -> np.ndarray:
    return np.concatenate([self.position, self.velocity, [self.t / MAX_STEPS]])

  def camera(self) -> np.ndarray:
    image = np.zeros((8, 8, 3), np.uint8)
    row, col = np.clip(((self.position + 1.0) * 4).astype(int), 0, 7)
    image[row, col] = 255
    return image

  def success(self) -> bool:
    return bool(np.linalg.norm(self.position - GOAL) < SUCCESS_RADIUS)

  def step(self, unit_action) -> None:
    self.velocity = 0.5 * self.velocity + 0.2 * np.clip(unit_action, -1.0, 1.0)
    self.position = self.position + self.velocity
    self.t += 1


class ForeignRobot(tfds.core.GeneratorBasedBuilder):
  """RLDS episodes of a noisy goal-seeking controller."""

  VERSION = tfds.core.Version("1.1.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="unit"), tfds.core.BuilderConfig(name="wide")]
  NUM_EPISODES = 24

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "steps": tfds.features.Dataset(
            {
              "observation": {
                "state": tfds.features.Tensor(shape=(5,), dtype=np.float64),
                "camera": tfds.features.Image(shape=(8, 8, 3)),
              },
              "action": tfds.features.Tensor(shape=(2,), dtype=np.float64),
              "reward": np.float64,
              "discount": np.float64,
              "is_first": np.bool_,
              "is_last": np.bool_,
              "is_terminal": np.bool_,
              "is_success": np.bool_,
              "is_collision": np.bool_,
            }
          ),
          "episode_metadata": {"episode_id": np.int32},
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i, steps in enumerate(generate_episodes(self.builder_config.name == "wide", self.NUM_EPISODES)):
      yield i, {"steps": steps, "episode_metadata": {"episode_id": i}}


def generate_episodes(wide: bool, num_episodes: int):
  """The episodes' steps, in the order generated (TFDS shuffles them on disk)."""
  low, high = action_bounds(wide)
  episodes = []
  for i in range(num_episodes):
    rng = np.random.default_rng(i)
    robot = _Robot(rng)
    horizon = int(rng.integers(5, MAX_STEPS + 1))
    steps = []
    while True:
      done = robot.success() or robot.t == horizon
      skill = 0.8 if i % 2 else 0.2
      unit = np.clip(skill * 3.0 * (GOAL - robot.position) + rng.normal(0.0, 0.6, 2), -1.0, 1.0)
      action = low + (unit + 1.0) / 2.0 * (high - low)
      steps.append(
        {
          "observation": {"state": robot.state(), "camera": robot.camera()},
          "action": np.zeros(2) if done else action,
          "reward": float(robot.success()),
          "discount": 0.0 if robot.success() else 1.0,
          "is_first": robot.t == 0,
          "is_last": done,
          "is_terminal": robot.success() and robot.t > 0,
          "is_success": robot.success(),
          "is_collision": False,
        }
      )
      if done:
        break
      robot.step(_unit_action(action, wide))
    episodes.append(steps)
  return episodes


def prepare(data_dir: str, config: str = "unit") -> str:
  """Builds the dataset with TFDS under data_dir; returns its directory (<data_dir>/foreign_robot/<config>/1.1.0)."""
  builder = ForeignRobot(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  return builder.data_dir


class ToyRobotEnv(gymnasium.Env):
  """The robot as a gymnasium env, its action space as the dataset's."""

  def __init__(self, wide: bool = True):
    self._wide = wide
    low, high = action_bounds(wide)
    self.action_space = gymnasium.spaces.Box(low.astype(np.float32), high.astype(np.float32))
    self.observation_space = gymnasium.spaces.Dict(
      {
        "state": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float64),
        "camera": gymnasium.spaces.Box(0, 255, (8, 8, 3), np.uint8),
      }
    )
    self._robot = None
    self.actions = []  # Every action received, for the tests.

  def _observation(self):
    return {"state": self._robot.state(), "camera": self._robot.camera()}

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self._robot = _Robot(self.np_random)
    return self._observation(), {"is_success": self._robot.success()}

  def step(self, action):
    if not self.action_space.contains(np.asarray(action, np.float32)):
      raise ValueError(f"Action {action} outside the action space {self.action_space}.")
    self.actions.append(np.asarray(action))
    self._robot.step(_unit_action(action, self._wide))
    success = self._robot.success()
    return self._observation(), float(success), success, self._robot.t >= MAX_STEPS, {"is_success": success}


def make_env(seed: int = 0):
  del seed  # gymnasium envs are seeded through reset(seed=...), which laeo's wrapper does.
  return ToyRobotEnv(wide=True)
