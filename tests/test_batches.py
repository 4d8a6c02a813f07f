"""The Reverb episode table and the tf.data batch cutting that feeds the learners."""

import numpy as np
import pytest
import reverb

from data_pipeline import batches as rp

LENGTH = 6  # Steps per episode (horizon 5).


def _episodes(n=5, terminal_last=False):
  # Observation value = 100 * episode + t, so every sampled index can be read back from the batch.
  episodes = []
  for i in range(n):
    obs = (100.0 * i + np.arange(LENGTH, dtype=np.float32))[:, None] * np.ones((1, 3), np.float32)
    is_terminal = np.zeros(LENGTH, bool)
    is_terminal[-1] = terminal_last
    episodes.append({"observation": obs, "action": np.full((LENGTH, 2), i, np.float32), "is_terminal": is_terminal})
  return episodes


def _decode(values):
  return (values // 100).astype(int), (values % 100).astype(int)


def test_future_batches_pair_a_state_with_a_later_state_of_the_same_episode():
  batch = next(rp.make_in_memory_iterator(_episodes(), "future", 64, discount=0.9, seed=0))
  assert set(batch) == {"observation", "action", "future_observation"}
  assert batch["observation"].shape == (64, 3) and batch["action"].shape == (64, 2)
  ep, t = _decode(batch["observation"][:, 0])
  future_ep, future_t = _decode(batch["future_observation"][:, 0])
  np.testing.assert_array_equal(ep, future_ep)
  np.testing.assert_array_equal(batch["action"][:, 0], ep)  # The action taken at s_t.
  assert np.all(future_t > t) and np.all(future_t <= LENGTH - 1) and np.all(t <= LENGTH - 2)


def test_future_offsets_follow_the_truncated_geometric_distribution():
  discount = 0.6
  offsets = {start: [] for start in range(LENGTH - 1)}
  iterator = rp.make_in_memory_iterator(_episodes(), "future", 500, discount=discount, seed=1)
  for _ in range(40):
    batch = next(iterator)
    _, t = _decode(batch["observation"][:, 0])
    _, future_t = _decode(batch["future_observation"][:, 0])
    for start, end in zip(t, future_t):
      offsets[start].append(end - start)
  for start, ks in offsets.items():
    max_k = LENGTH - 1 - start
    expected = discount ** np.arange(1, max_k + 1)
    expected /= expected.sum()
    observed = np.bincount(ks, minlength=max_k + 1)[1:] / len(ks)
    assert len(ks) > 2000
    np.testing.assert_allclose(observed, expected, atol=0.03)


def test_transition_batches_use_the_next_state_and_terminal_discount():
  batch = next(rp.make_in_memory_iterator(_episodes(terminal_last=True), "transition", 256, 0.99, seed=0))
  _, t = _decode(batch["observation"][:, 0])
  _, next_t = _decode(batch["next_observation"][:, 0])
  np.testing.assert_array_equal(next_t, t + 1)
  np.testing.assert_array_equal(batch["discount"], np.where(next_t == LENGTH - 1, 0.0, 1.0))


def test_in_memory_batches_are_reproducible_from_the_seed():
  def first_batches(seed):
    iterator = rp.make_in_memory_iterator(_episodes(), "future", 16, 0.9, seed=seed)
    return [next(iterator)["future_observation"] for _ in range(3)]

  for a, b in zip(first_batches(3), first_batches(3)):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(first_batches(3), first_batches(4)))


def test_reverb_table_serves_every_episode_without_blocking_after_loading():
  episodes = _episodes(n=7)
  signature = rp.episode_signature(episodes)
  server = reverb.Server([rp.make_episode_table(len(episodes), signature)])
  try:
    address = f"localhost:{server.port}"
    assert rp.insert_episodes(address, episodes, signature) == 7
    assert reverb.Client(address).server_info()[rp.EPISODE_TABLE].current_size == 7
    iterator = rp.make_reverb_iterator(address, signature, "future", 32, 0.9, seed=0)
    seen = set()
    for _ in range(20):  # A fixed dataset is sampled indefinitely: no stall after the first batches.
      batch = next(iterator)
      ep, _ = _decode(batch["observation"][:, 0])
      future_ep, _ = _decode(batch["future_observation"][:, 0])
      np.testing.assert_array_equal(ep, future_ep)
      seen.update(ep.tolist())
    assert seen == set(range(7))
    assert reverb.Client(address).server_info()[rp.EPISODE_TABLE].current_size == 7  # Nothing evicted.
  finally:
    server.stop()


def test_bad_input_gives_clear_errors():
  with pytest.raises(ValueError, match="no episodes"):
    rp.episode_signature([])
  mismatched = _episodes(2)
  mismatched[1]["observation"] = mismatched[1]["observation"][:, :2]
  with pytest.raises(ValueError, match="per step"):
    rp.episode_signature(mismatched)
  with pytest.raises(ValueError, match="a transition needs two"):
    rp.episode_signature([{k: v[:1] for k, v in _episodes(1)[0].items()}])
  with pytest.raises(ValueError, match="more than the table's 4"):
    rp.episode_signature(_episodes(1), max_length=4)
  with pytest.raises(ValueError, match="batch kind"):
    rp.make_in_memory_iterator(_episodes(), "pairs", 8, 0.9, seed=0)
  with pytest.raises(ValueError, match="discount"):
    rp.make_in_memory_iterator(_episodes(), "future", 8, 1.0, seed=0)


def _variable_length_episodes(lengths, terminal):
  episodes = []
  for i, (length, ends) in enumerate(zip(lengths, terminal)):
    obs = (100.0 * i + np.arange(length, dtype=np.float32))[:, None] * np.ones((1, 3), np.float32)
    is_terminal = np.zeros(length, bool)
    is_terminal[-1] = ends
    episodes.append({"observation": obs, "action": np.full((length, 2), i, np.float32), "is_terminal": is_terminal})
  return episodes


def test_variable_length_episodes_are_sampled_within_their_own_length():
  lengths, terminal = [3, 5, 9, 2], [True, False, True, False]
  episodes = _variable_length_episodes(lengths, terminal)
  signature = rp.episode_signature(episodes)
  assert signature["observation"].shape == (9, 3) and signature[rp.LENGTH_KEY].shape == ()
  padded = rp.pad_episode(episodes[0], signature)
  assert padded[rp.LENGTH_KEY] == 3 and padded["observation"].shape == (9, 3)
  np.testing.assert_array_equal(padded["observation"][3:, 0], 2.0)  # The last step, repeated.
  seen = set()
  for kind in ("future", "transition"):
    iterator = rp.make_in_memory_iterator(episodes, kind, 256, discount=0.8, seed=2)
    for _ in range(10):
      batch = next(iterator)
      ep, t = _decode(batch["observation"][:, 0])
      later_ep, later_t = _decode(batch["future_observation" if kind == "future" else "next_observation"][:, 0])
      length = np.asarray(lengths)[ep]
      np.testing.assert_array_equal(ep, later_ep)
      assert np.all(t <= length - 2) and np.all(later_t > t) and np.all(later_t <= length - 1)
      np.testing.assert_array_equal(batch["action"][:, 0], ep)
      if kind == "transition":
        np.testing.assert_array_equal(later_t, t + 1)
        ends = np.asarray(terminal)[ep] & (later_t == length - 1)  # Only a real terminal step cuts the return.
        np.testing.assert_array_equal(batch["discount"], np.where(ends, 0.0, 1.0))
      seen.update(zip(ep.tolist(), t.tolist()))
  # Every transition of every episode is drawn, the 2-step episode's single one included.
  assert seen == {(i, t) for i, length in enumerate(lengths) for t in range(length - 1)}


def test_variable_length_episodes_go_through_the_reverb_table():
  episodes = _variable_length_episodes([4, 7, 2], [False, True, False])
  signature = rp.episode_signature(episodes)
  server = reverb.Server([rp.make_episode_table(len(episodes), signature)])
  try:
    address = f"localhost:{server.port}"
    rp.insert_episodes(address, episodes, signature)
    batch = next(rp.make_reverb_iterator(address, signature, "future", 64, 0.9, seed=0))
    ep, t = _decode(batch["observation"][:, 0])
    _, future_t = _decode(batch["future_observation"][:, 0])
    length = np.asarray([4, 7, 2])[ep]
    assert np.all(future_t <= length - 1) and np.all(t <= length - 2) and np.all(future_t > t)
  finally:
    server.stop()


def test_episode_reuse_cuts_fresh_examples_from_the_same_draw_of_episodes():
  episodes = _episodes(n=50)
  reuse = 3
  iterator = rp.make_in_memory_iterator(episodes, "future", 32, discount=0.6, seed=5, episode_reuse=reuse)
  batches = [next(iterator) for _ in range(4 * reuse)]
  offsets = {start: [] for start in range(LENGTH - 1)}
  for group in range(4):
    draws = [_decode(b["observation"][:, 0]) for b in batches[group * reuse : (group + 1) * reuse]]
    # The same episodes, in the same order, for `reuse` consecutive batches; fresh steps for each.
    for ep, _ in draws[1:]:
      np.testing.assert_array_equal(ep, draws[0][0])
    assert not all(np.array_equal(t, draws[0][1]) for _, t in draws[1:])
  assert not np.array_equal(
    _decode(batches[0]["observation"][:, 0])[0], _decode(batches[reuse]["observation"][:, 0])[0]
  )
  # Each batch is still cut as without reuse: futures of the same episode, truncated-geometric offsets.
  iterator = rp.make_in_memory_iterator(episodes, "future", 500, discount=0.6, seed=1, episode_reuse=reuse)
  for _ in range(40):
    batch = next(iterator)
    ep, t = _decode(batch["observation"][:, 0])
    future_ep, future_t = _decode(batch["future_observation"][:, 0])
    np.testing.assert_array_equal(ep, future_ep)
    for start, end in zip(t, future_t):
      offsets[start].append(end - start)
  for start, ks in offsets.items():
    expected = 0.6 ** np.arange(1, LENGTH - start)
    np.testing.assert_allclose(
      np.bincount(ks, minlength=LENGTH - start)[1:] / len(ks), expected / expected.sum(), atol=0.03
    )
  with pytest.raises(ValueError, match="episode_reuse"):
    rp.make_in_memory_iterator(episodes, "future", 8, 0.9, seed=0, episode_reuse=0)


def _sharded_servers(episodes, num_shards):
  signature = rp.episode_signature(episodes)
  sizes = rp.shard_sizes(len(episodes), num_shards)
  servers = [reverb.Server([rp.make_episode_table(n, signature)]) for n in sizes]
  addresses = [f"localhost:{s.port}" for s in servers]
  return signature, servers, addresses


def test_sharded_replay_holds_each_episode_once_and_draws_every_transition_as_one_server_would():
  from scipy import stats  # pylint: disable=g-import-not-at-top

  # 7 episodes of 3 to 9 steps over 3 shards of 3, 2 and 2 episodes: with one server each episode is drawn with
  # probability 1/7, then each of its transitions uniformly; equal weights per shard would favour shards 1 and 2.
  lengths = [3, 9, 4, 8, 5, 7, 6]
  episodes = []
  for i, length in enumerate(lengths):
    obs = (100.0 * i + np.arange(length, dtype=np.float32))[:, None] * np.ones((1, 3), np.float32)
    episodes.append(
      {"observation": obs, "action": np.zeros((length, 2), np.float32), "is_terminal": np.zeros(length, bool)}
    )
  signature, servers, addresses = _sharded_servers(episodes, 3)
  try:
    counts = rp.insert_sharded_episodes(dict(enumerate(addresses)), episodes, signature, num_shards=3)
    assert counts == {0: 3, 1: 2, 2: 2}
    for k, address in enumerate(addresses):
      shard = rp.sharded_episode_dataset([address], signature, counts[k], seed=0).take(60)
      held = {int(e["observation"][0, 0]) // 100 for e in shard.as_numpy_iterator()}
      assert held == set(range(k, 7, 3)), f"shard {k} holds episodes {held}"
    iterator = rp.make_reverb_iterator(addresses, signature, "transition", 128, 0.9, seed=0, num_episodes=7)
    drawn = np.concatenate([next(iterator)["observation"][:, 0] for _ in range(40)])
  finally:
    for server in servers:
      server.stop()
  cells = [(i, t) for i, length in enumerate(lengths) for t in range(length - 1)]
  expected = np.array([1 / 7 / (lengths[i] - 1) for i, _ in cells]) * len(drawn)
  episode, t = _decode(drawn)
  observed = np.array([np.sum((episode == i) & (t == s)) for i, s in cells])
  assert observed.sum() == len(drawn)  # Nothing drawn outside the episodes' transitions.
  p = stats.chisquare(observed, expected).pvalue
  assert p > 1e-4, f"transitions not drawn as from one server (chi-square p = {p:.2g}): {observed} vs {expected}"


def test_replay_shards_need_an_episode_each():
  assert rp.shard_sizes(7, 3) == [3, 2, 2]
  with pytest.raises(ValueError, match="a shard would hold none"):
    rp.shard_sizes(2, 3)
  with pytest.raises(ValueError, match="needs the dataset's num_episodes"):
    rp.make_reverb_iterator(["localhost:1", "localhost:2"], {}, "transition", 8, 0.9, seed=0)
