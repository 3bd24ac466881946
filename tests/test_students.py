"""Student networks, checkpoints and the student agent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import students
from arena.agents import make_agent
from arena.core import TlmError, masked_argmax
from arena.games import get_game
from students import (
    StudentAgent,
    StudentNet,
    build_student,
    load_net,
    load_student,
    param_count,
    save_student,
)
from students.networks import masked_log_softmax, parse_spec

SPECS = ["mlp:64x2", "cnn:16x2", "res:16x2"]
BOARD_GAMES = ["tictactoe", "connect_four"]


def random_batch(game: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 0/1 planes in the game's dtype and random masks with at least one legal move."""
    g = get_game(game)
    rng = np.random.default_rng(seed)
    obs = (rng.random((n, *g.obs_shape)) < 0.3).astype(g.obs_dtype)
    mask = (rng.random((n, g.num_actions)) < 0.6).astype(np.int8)
    mask[np.arange(n), rng.integers(g.num_actions, size=n)] = 1
    return obs, mask


def outputs(net: StudentNet, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return net(torch.from_numpy(obs))


def same_weights(a: StudentNet, b: StudentNet) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def rewrite_config(ckpt: Path, **changes: object) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    config.update(changes)
    (ckpt / "config.json").write_text(json.dumps(config))


def rewrite_weights(ckpt: Path, data: bytes) -> None:
    """Replace the weights and update the checksum, so only the content is wrong."""
    (ckpt / "model.safetensors").write_bytes(data)
    rewrite_config(ckpt, weights_sha256=hashlib.sha256(data).hexdigest())


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return save_student(build_student("mlp:64x2", "tictactoe", 7), tmp_path / "student")


# --- specs and networks -------------------------------------------------------------


def test_specs_parse_with_defaults_and_canonical_spelling() -> None:
    assert str(parse_spec("mlp")) == "mlp:256x2"
    assert str(parse_spec("cnn")) == "cnn:32x3"
    assert str(parse_spec("res")) == "res:32x2"
    assert str(parse_spec(" mlp:128x3 ")) == "mlp:128x3"
    assert build_student("cnn", "tictactoe", 0).spec == "cnn:32x3"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("foo:3x3", r"unknown student architecture 'foo' \(known: mlp, cnn, res, gru\)"),
        ("mlp:256", r"bad student spec 'mlp:256': expected mlp:WIDTHxLAYERS"),
        ("cnn:axb", r"bad student spec 'cnn:axb'"),
        ("mlp:0x2", r"width must be in 1\.\.8192, got 0"),
        ("res:32x0", r"layers must be in 1\.\.64, got 0"),
    ],
)
def test_bad_specs_are_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(TlmError, match=message):
        build_student(spec, "tictactoe", 0)


def test_convolutional_students_need_a_board() -> None:
    for spec in ("cnn", "res:8x1"):
        with pytest.raises(TlmError, match=r"needs a board-shaped observation.*\(36,\): use mlp"):
            build_student(spec, "leduc_holdem", 0)


def test_bad_seed_and_game_are_refused() -> None:
    with pytest.raises(TlmError, match="seed must be an integer"):
        build_student("mlp", "tictactoe", -1)
    with pytest.raises(TlmError, match="unknown game 'chekers'"):
        build_student("mlp", "chekers", 0)


@pytest.mark.parametrize("game", BOARD_GAMES)
@pytest.mark.parametrize("spec", SPECS)
def test_every_architecture_runs_on_board_games(spec: str, game: str) -> None:
    g = get_game(game)
    net = build_student(spec, game, 0)
    obs, _ = random_batch(game, 5, seed=1)
    logits, value = outputs(net, obs)
    assert logits.shape == (5, g.num_actions) and logits.dtype == torch.float32
    assert value.shape == (5,)
    assert torch.isfinite(logits).all()
    assert ((value >= -1) & (value <= 1)).all()
    # Rows do not see each other (no batch normalization): one row alone gives the same.
    logits1, value1 = outputs(net, obs[2:3])
    assert torch.allclose(logits1, logits[2:3], atol=1e-6)
    assert torch.allclose(value1, value[2:3], atol=1e-6)
    # Any observation dtype is accepted and means the same thing.
    logits_f, _ = outputs(net, obs.astype(np.float32))
    logits_b, _ = outputs(net, obs.astype(bool))
    assert torch.equal(logits_f, logits) and torch.equal(logits_b, logits)


def test_mlp_runs_on_a_flat_observation() -> None:
    net = build_student("mlp:32x1", "leduc_holdem", 0)
    obs, _ = random_batch("leduc_holdem", 3, seed=0)
    logits, value = outputs(net, obs)
    assert logits.shape == (3, 4) and value.shape == (3,)


def test_param_count_matches_the_architecture() -> None:
    # tictactoe: 18 inputs, 9 actions. mlp:64x2 = 18*64+64 + 64*64+64 + (64*9+9) + (64+1)
    assert param_count(build_student("mlp:64x2", "tictactoe", 0)) == 1216 + 4160 + 585 + 65
    # cnn:16x1 on connect four (6x7x2, 7 actions): conv 2*16*9+16, policy 1x1 conv 16*2+2
    # then 84*7+7, value 1x1 conv 16+1 then 42*64+64 and 64+1.
    expected = (288 + 16) + (32 + 2) + (588 + 7) + (16 + 1) + (2688 + 64) + 65
    assert param_count(build_student("cnn:16x1", "connect_four", 0)) == expected
    # A residual block is two 16->16 3x3 convolutions more than the stem alone.
    res1 = param_count(build_student("res:16x1", "connect_four", 0))
    res2 = param_count(build_student("res:16x2", "connect_four", 0))
    assert res2 - res1 == 2 * (16 * 16 * 9 + 16)


# --- seeding --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_same_student_different_seed_different_student(spec: str) -> None:
    obs, mask = random_batch("connect_four", 16, seed=3)
    a = build_student(spec, "connect_four", 11)
    b = build_student(spec, "connect_four", 11)
    c = build_student(spec, "connect_four", 12)
    assert same_weights(a, b)
    assert not same_weights(a, c)
    pa = StudentAgent(a).policy(obs, mask)
    assert np.array_equal(pa, StudentAgent(b).policy(obs, mask))
    assert not np.allclose(pa, StudentAgent(c).policy(obs, mask))


def test_building_a_student_leaves_global_torch_randomness_alone() -> None:
    before = torch.random.get_rng_state()
    build_student("res:8x2", "tictactoe", 5)
    assert torch.equal(before, torch.random.get_rng_state())
    # ... and does not depend on it either.
    torch.manual_seed(123)
    a = build_student("mlp:16x1", "tictactoe", 5)
    torch.manual_seed(456)
    assert same_weights(a, build_student("mlp:16x1", "tictactoe", 5))


# --- masked softmax and the agent -----------------------------------------------------


def test_masked_log_softmax_is_a_distribution_over_legal_actions() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, 0.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 0, 0]])
    p = masked_log_softmax(logits, mask).exp()
    e1, e3 = np.exp(1.0), np.exp(3.0)
    assert p[0].tolist() == pytest.approx([e1 / (e1 + e3), 0.0, e3 / (e1 + e3)])
    assert p[1].tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert p[2].tolist() == [0.0, 0.0, 0.0]  # no legal action: zeros, not NaN


def test_agent_policy_is_the_masked_softmax_in_one_forward() -> None:
    net = build_student("cnn:8x2", "connect_four", 0)
    calls: list[int] = []
    net.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    agent = StudentAgent(net)
    obs, mask = random_batch("connect_four", 32, seed=4)
    probs = agent.policy(obs, mask)
    assert calls == [32]
    logits, value = outputs(net, obs)
    expected = masked_log_softmax(logits.double(), torch.from_numpy(mask)).exp().numpy()
    assert probs.dtype == np.float64
    assert np.allclose(probs, expected, atol=1e-12)
    assert (probs[mask == 0] == 0).all()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    v = agent.value(obs, mask)
    assert v.dtype == np.float64 and np.array_equal(v, value.double().numpy())
    p2, v2 = agent.policy_and_value(obs, mask)
    assert np.array_equal(p2, probs) and np.array_equal(v2, v)


def test_agent_plays_greedy_or_samples() -> None:
    net = build_student("mlp:16x1", "tictactoe", 0)
    obs, mask = random_batch("tictactoe", 200, seed=5)
    greedy = StudentAgent(net, greedy=True)
    assert greedy.game == "tictactoe"
    expected = masked_argmax(greedy.policy(obs, mask), mask)
    assert np.array_equal(greedy.act(obs, mask, np.random.default_rng(0)), expected)
    sampler = StudentAgent(net, greedy=False)
    a1 = sampler.act(obs, mask, np.random.default_rng(1))
    assert np.array_equal(a1, sampler.act(obs, mask, np.random.default_rng(1)))
    assert mask[np.arange(200), a1].all()
    assert not np.array_equal(a1, expected)


def test_agent_acts_on_the_real_pettingzoo_observation() -> None:
    env = get_game("connect_four").make_env()
    env.reset(seed=0)
    observation = env.observe(env.agent_selection)
    agent = StudentAgent(build_student("res:8x1", "connect_four", 0))
    obs, mask = observation["observation"][None], observation["action_mask"][None]
    action = agent.act(obs, mask, np.random.default_rng(0))
    assert action.shape == (1,) and mask[0, action[0]] == 1


def test_observation_shape_mismatch_is_one_clear_line() -> None:
    agent = StudentAgent(build_student("mlp:16x1", "connect_four", 0))
    obs, mask = random_batch("tictactoe", 2, seed=0)
    with pytest.raises(
        TlmError, match=r"^observation shape \(3,3,2\) does not match the student's \(6,7,2\)$"
    ):
        agent.policy(obs, mask)
    with pytest.raises(TlmError, match=r"observation shape \(3,3,2\) does not match"):
        agent.net(torch.from_numpy(obs))
    obs4, _ = random_batch("connect_four", 2, seed=0)
    with pytest.raises(TlmError, match="action mask shape"):
        agent.policy(obs4, mask)


# --- checkpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_save_load_gives_identical_policies_and_values(spec: str, tmp_path: Path) -> None:
    net = build_student(spec, "connect_four", 3)
    with torch.no_grad():  # move away from the seeded initialization, as training would
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(9)))
    path = save_student(net, tmp_path / "ckpt", provenance={"teacher": "alphabeta:4"})
    loaded = load_net(path)
    assert loaded.spec == net.spec and loaded.game == "connect_four" and loaded.seed == 3
    assert same_weights(net, loaded)
    obs, mask = random_batch("connect_four", 20, seed=6)
    l1, v1 = outputs(net, obs)
    l2, v2 = outputs(loaded, obs)
    assert torch.equal(l1, l2) and torch.equal(v1, v2)
    agent = load_student(path, game="connect_four")
    assert isinstance(agent, StudentAgent) and agent.greedy
    assert np.array_equal(agent.policy(obs, mask), StudentAgent(net).policy(obs, mask))
    assert np.array_equal(agent.value(obs, mask), StudentAgent(net).value(obs, mask))
    assert not load_student(path, greedy=False).greedy


def test_config_records_what_rebuilds_the_student(ckpt: Path) -> None:
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((ckpt / "config.json").read_text())
    assert config["spec"] == "mlp:64x2"
    assert config["game"] == "tictactoe"
    assert config["obs_shape"] == [3, 3, 2]
    assert config["num_actions"] == 9
    assert config["seed"] == 7
    assert config["param_count"] == 6026
    assert config["format_version"] == 2
    assert config["heads"] == "linear"
    assert config["provenance"] is None
    assert students.load is load_student


def test_saving_over_a_checkpoint_replaces_it(ckpt: Path) -> None:
    save_student(build_student("cnn:8x1", "tictactoe", 1), ckpt, provenance={"step": 2})
    assert load_net(ckpt).spec == "cnn:8x1"
    assert json.loads((ckpt / "config.json").read_text())["provenance"] == {"step": 2}
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["student"]


def test_saving_refuses_to_clobber_a_non_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(TlmError, match="exists and is not a checkpoint"):
        save_student(build_student("mlp:8x1", "tictactoe", 0), tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_unserialisable_provenance_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TlmError, match="provenance is not JSON-serialisable"):
        save_student(build_student("mlp:8x1", "tictactoe", 0), tmp_path / "s", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_leaves_nothing_behind(tmp_path: Path) -> None:
    # The parent is a regular file: nothing can be created under it.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with pytest.raises(TlmError, match=r"^cannot save checkpoint to .*blocker/student: "):
        save_student(build_student("mlp:8x1", "tictactoe", 0), blocker / "student")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    assert blocker.read_text() == "a file"


def test_a_save_failing_midway_leaves_nothing_and_keeps_the_old_checkpoint(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import students.checkpoint as checkpoint

    real_write = checkpoint._write_file

    def fail_on_config(path: Path, data: bytes) -> None:
        if path.name == "config.json":
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(checkpoint, "_write_file", fail_on_config)
    old = ckpt / "model.safetensors"
    old_bytes = old.read_bytes()
    with pytest.raises(TlmError, match="No space left on device"):
        save_student(build_student("mlp:8x1", "tictactoe", 0), ckpt.parent / "new")
    with pytest.raises(TlmError, match="No space left on device"):
        save_student(build_student("mlp:8x1", "tictactoe", 0), ckpt)
    # No temporary directory, no half-written "new", and the old checkpoint untouched.
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["student"]
    assert old.read_bytes() == old_bytes
    assert load_net(ckpt).spec == "mlp:64x2"


def test_missing_paths_and_non_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TlmError, match=r"no student checkpoint at .*nowhere: it does not exist"):
        load_net(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TlmError, match=r"empty is not a student checkpoint \(no config.json\)"):
        load_student(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TlmError, match=r"file is not a student checkpoint \(not a directory\)"):
        load_net(tmp_path / "file")


def test_checkpoint_for_another_game_is_refused(ckpt: Path) -> None:
    with pytest.raises(TlmError, match=rf"^checkpoint {ckpt} is for tictactoe, not connect_four$"):
        load_student(ckpt, game="connect_four")


@pytest.mark.parametrize("damage", ["truncate", "flip_header", "flip_weights"])
def test_corrupted_weights_are_refused(ckpt: Path, damage: str) -> None:
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_header":
        data[10] ^= 0xFF
    else:
        data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(TlmError, match=r"model.safetensors is corrupted or truncated"):
        load_net(ckpt)


def test_unparseable_weights_with_a_matching_checksum_are_refused(ckpt: Path) -> None:
    data = (ckpt / "model.safetensors").read_bytes()
    rewrite_weights(ckpt, data[: len(data) - 100])
    with pytest.raises(TlmError, match=r"model.safetensors is corrupted: "):
        load_net(ckpt)


def test_weights_that_do_not_fit_the_config_are_refused(ckpt: Path) -> None:
    tensors = load_safetensors((ckpt / "model.safetensors").read_bytes())
    tensors["policy_head.0.weight"] = tensors["policy_head.0.weight"].T.contiguous()
    rewrite_weights(ckpt, save_safetensors(tensors))
    with pytest.raises(
        TlmError, match=r"weight 'policy_head.0.weight' has shape \(64,9\) but mlp:64x2 needs"
    ):
        load_net(ckpt)
    del tensors["policy_head.0.weight"]
    rewrite_weights(ckpt, save_safetensors(tensors))
    with pytest.raises(TlmError, match=r"does not fit mlp:64x2: missing policy_head.0.weight"):
        load_net(ckpt)


def test_config_changed_to_another_size_is_refused(ckpt: Path) -> None:
    rewrite_config(ckpt, spec="mlp:32x2")
    with pytest.raises(TlmError, match=r"says 6026 parameters, but mlp:32x2 on tictactoe has"):
        load_net(ckpt)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"learning_rate": 0.1}, r"config.json has unknown keys: learning_rate"),
        ({"seed": "7"}, r"field 'seed' has the wrong type"),
        ({"format_version": 9}, r"has format version 9; this tlm reads versions 1, 2"),
        ({"heads": "gelu"}, r"field 'heads' must be one of linear, relu, not 'gelu'"),
        ({"format_version": 1}, r"unknown keys: heads \(format version 1\)"),
        ({"game": "othello"}, r"unknown game 'othello'"),
        ({"obs_shape": [9]}, r"saved for observations \(9,\) and 9 actions, but tictactoe"),
    ],
)
def test_bad_configs_are_refused(ckpt: Path, edit: dict[str, object], message: str) -> None:
    rewrite_config(ckpt, **edit)
    with pytest.raises(TlmError, match=message):
        load_net(ckpt)


def test_missing_config_fields_and_files_are_refused(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    del config["seed"], config["spec"]
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(TlmError, match=r"config.json lacks fields: spec, seed$"):
        load_net(ckpt)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(TlmError, match=r"config.json is not readable JSON"):
        load_net(ckpt)


def test_missing_weights_are_refused(ckpt: Path) -> None:
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(TlmError, match=r"has no model.safetensors"):
        load_net(ckpt)


# --- checkpoint paths as agent specs --------------------------------------------------


def test_a_checkpoint_directory_is_an_agent_spec(ckpt: Path) -> None:
    agent = make_agent(str(ckpt), "tictactoe")
    assert isinstance(agent, StudentAgent)
    assert agent.name == str(ckpt) and agent.game == "tictactoe" and agent.greedy
    obs, mask = random_batch("tictactoe", 4, seed=0)
    assert np.array_equal(agent.policy(obs, mask), load_student(ckpt).policy(obs, mask))
    with pytest.raises(TlmError, match="is for tictactoe, not connect_four"):
        make_agent(str(ckpt), "connect_four")


def test_directories_without_a_config_are_not_claimed(tmp_path: Path) -> None:
    with pytest.raises(TlmError, match="unknown agent spec"):
        make_agent(str(tmp_path), "tictactoe")
    with pytest.raises(TlmError, match="unknown agent spec"):
        make_agent(str(tmp_path / "missing"), "tictactoe")


def _trunk_gradient(net: StudentNet, obs: torch.Tensor) -> float:
    net.zero_grad()
    logits, value = net(obs)
    (logits.logsumexp(dim=1) - logits[:, 0] + value.square()).sum().backward()
    return sum(float(p.grad.abs().sum()) for p in net.trunk.parameters() if p.grad is not None)


@pytest.mark.parametrize("spec", ["res:8x2", "cnn:8x2"])
def test_heads_whose_units_are_all_negative_still_train_the_trunk(spec: str) -> None:
    # A ReLU after the heads' 1x1 convolutions dies when every unit is negative on every
    # position: then no gradient reaches the trunk and the student never learns again.
    # The linear heads of new students keep passing it.
    game = get_game("connect_four")
    obs = torch.as_tensor(np.random.default_rng(0).integers(0, 2, (16, 6, 7, 2)))
    for heads, alive in (("relu", False), ("linear", True)):
        net = build_student(spec, game, seed=0, heads=heads)
        with torch.no_grad():
            net.policy_head[0].bias.fill_(-100.0)
            net.value_head[0].bias.fill_(-100.0)
        assert (_trunk_gradient(net, obs) > 0) == alive, heads


def test_version_1_checkpoints_keep_their_relu_heads(tmp_path: Path) -> None:
    game = get_game("connect_four")
    old = build_student("res:8x1", game, seed=3, heads="relu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in old.parameters():  # trained-looking weights: some head units negative
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    path = save_student(old, tmp_path / "old")
    config = json.loads((path / "config.json").read_text())
    assert config["heads"] == "relu"
    del config["heads"]
    config["format_version"] = 1
    (path / "config.json").write_text(json.dumps(config))
    loaded = load_net(path, game)
    assert loaded.heads == "relu"
    obs = torch.as_tensor(np.random.default_rng(1).integers(0, 2, (32, 6, 7, 2)))
    with torch.no_grad():
        want, got = old(obs), loaded(obs)
        linear = build_student("res:8x1", game, seed=3)
        linear.load_state_dict(old.state_dict())
        other = linear(obs)
    assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
    assert not torch.equal(want[0], other[0])  # the heads do change what it plays
    linear.use_heads("relu")
    assert torch.equal(linear(obs)[0], want[0])


def test_the_shipped_connect_four_zoo_student_has_the_heads_it_was_trained_with() -> None:
    from teachers.zoo import zoo_dir

    config = json.loads((zoo_dir("connect_four") / "config.json").read_text())
    want = config.get("heads", "relu")  # format 1 saved no heads: they were ReLU
    assert load_net(zoo_dir("connect_four"), "connect_four").heads == want == "linear"


def test_payloads_carry_the_heads() -> None:
    from students.payload import student_from_payload, student_payload

    game = get_game("connect_four")
    for heads in ("relu", "linear"):
        agent = StudentAgent(build_student("cnn:8x1", game, seed=0, heads=heads))
        back = student_from_payload(student_payload(agent), game)
        assert back.net.heads == heads


@pytest.mark.parametrize("heads", ["linear", "relu"])
@pytest.mark.parametrize("spec", ["res:64x3", "cnn:16x2"])
def test_a_positions_outputs_do_not_depend_on_its_batch(spec: str, heads: str) -> None:
    # Batches padded to a multiple of 8 rows (as the search pads them) give every
    # position the same outputs whatever else is in the batch.
    net = build_student(spec, "connect_four", seed=0, heads=heads).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    x = torch.as_tensor(np.random.default_rng(0).integers(0, 2, (256, 6, 7, 2)))
    with torch.inference_mode():
        logits, value = net(x)
        for n in (8, 16, 40, 128):
            part = net(x[-n:])
            assert torch.equal(part[0], logits[-n:]) and torch.equal(part[1], value[-n:])
