"""A robot dataset in the Open X-Embodiment layout, written by TFDS's own builder, for the tests.

As the `rlds_dataset_builder` template and the RT-1 conversions lay them out: per step an `observation` dict of
two camera images of their own sizes (a 48x80 scene camera and a 40x40 wrist camera) beside a float32 `state`,
an `action` dict (`world_vector`, `rotation_delta`, `gripper_closedness_action`, `terminate_episode`), a
`reward` of 1 on the last step of solved episodes, `language_instruction` text, and `episode_metadata`.
Episodes have variable lengths; about half reach the goal. A point gripper moves in 3-D towards a fixed goal; its
`world_vector` is in [-2, 2] (its units, not the policy's [-1, 1]).
"""

import numpy as np
import tensorflow_datasets as tfds

GOAL = np.array([0.4, -0.2, 0.3], np.float32)
WORLD_VECTOR_HIGH = 2.0
SUCCESS_RADIUS = 0.2
SCENE = (48, 80)
WRIST = (40, 40)


def _scene(position: np.ndarray) -> np.ndarray:
  image = np.full(SCENE + (3,), 30, np.uint8)
  row = int(np.clip((position[1] + 1.0) / 2.0 * (SCENE[0] - 1), 0, SCENE[0] - 1))
  col = int(np.clip((position[0] + 1.0) / 2.0 * (SCENE[1] - 1), 0, SCENE[1] - 1))
  image[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3] = (255, 200, 0)
  return image


def _wrist(position: np.ndarray) -> np.ndarray:
  image = np.zeros(WRIST + (3,), np.uint8)
  image[..., 2] = np.uint8(np.clip((position[2] + 1.0) * 127.0, 0, 255))
  return image


class OxeRobot(tfds.core.GeneratorBasedBuilder):
  """RLDS episodes of a noisy goal-seeking controller, in the Open X-Embodiment layout."""

  VERSION = tfds.core.Version("1.0.0")
  NUM_EPISODES = 20

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "steps": tfds.features.Dataset(
            {
              "observation": {
                "image": tfds.features.Image(shape=SCENE + (3,)),
                "wrist_image": tfds.features.Image(shape=WRIST + (3,)),
                "state": tfds.features.Tensor(shape=(4,), dtype=np.float32),
              },
              "action": {
                "world_vector": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "rotation_delta": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "gripper_closedness_action": tfds.features.Tensor(shape=(1,), dtype=np.float32),
                "terminate_episode": tfds.features.Tensor(shape=(3,), dtype=np.int32),
              },
              "reward": tfds.features.Scalar(dtype=np.float32),
              "discount": tfds.features.Scalar(dtype=np.float32),
              "is_first": np.bool_,
              "is_last": np.bool_,
              "is_terminal": np.bool_,
              "language_instruction": tfds.features.Text(),
            }
          ),
          "episode_metadata": {"file_path": tfds.features.Text()},
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i, steps in enumerate(generate_episodes(self.NUM_EPISODES)):
      yield i, {"steps": steps, "episode_metadata": {"file_path": f"episode_{i}.npy"}}


def raw_observation(position: np.ndarray, gripper: float) -> dict:
  """One step's `observation` dict as the dataset stores it."""
  return {
    "image": _scene(position),
    "wrist_image": _wrist(position),
    "state": np.concatenate([position, [gripper]]).astype(np.float32),
  }


def generate_episodes(num_episodes: int):
  """The episodes' steps, in the order generated."""
  episodes = []
  for i in range(num_episodes):
    rng = np.random.default_rng(i)
    position = rng.uniform(-1.0, 1.0, 3).astype(np.float32)
    gripper = 0.0
    horizon = int(rng.integers(3, 12))
    skill = 0.6 if i % 2 else 0.1
    steps = []
    for t in range(horizon + 1):
      solved = bool(np.linalg.norm(position - GOAL) < SUCCESS_RADIUS)
      last = solved or t == horizon
      move = np.clip(skill * (GOAL - position) / 0.2 + rng.normal(0.0, 0.5, 3), -1.0, 1.0).astype(np.float32)
      close = np.float32(1.0 if solved else rng.uniform(-1.0, 1.0))
      steps.append(
        {
          "observation": raw_observation(position, gripper),
          "action": {
            "world_vector": np.zeros(3, np.float32) if last else WORLD_VECTOR_HIGH * move,
            "rotation_delta": (0.1 * rng.normal(size=3)).astype(np.float32),
            "gripper_closedness_action": np.array([close], np.float32),
            "terminate_episode": np.array([1, 0, 0] if last else [0, 1, 0], np.int32),
          },
          "reward": np.float32(solved and last),
          "discount": np.float32(0.0 if solved else 1.0),
          "is_first": t == 0,
          "is_last": last,
          "is_terminal": solved,
          "language_instruction": "move the gripper to the goal",
        }
      )
      if last:
        break
      position = np.clip(position + 0.2 * move, -1.0, 1.0).astype(np.float32)
      gripper = float(close)
    episodes.append(steps)
  return episodes


def prepare(data_dir: str) -> str:
  """Builds the dataset with TFDS under data_dir; returns its directory (<data_dir>/oxe_robot/1.0.0)."""
  builder = OxeRobot(data_dir=data_dir)
  builder.download_and_prepare()
  return builder.data_dir
