"""The fast student-guided PUCT: its kernels against the engines, canonical forms under
the symmetries, the search's invariants (visit counts, solved moves, same seed same
tree, the same tree whatever the batch, the cache or the shard size), the evaluation
cache against the network, and the ``puct`` spec's bad inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from arena.agents import make_agent
from arena.core import Engine, State, TlmError
from arena.games import get_game
from arena.matches import play_matches
from arena.positions import load_positions
from arena.symmetry import symmetries
from scripts.cli import main
from students import StudentNet, build_student, save_student
from teachers.mcts import kernels
from teachers.mcts.cache import EvaluationCache
from teachers.mcts.inference import LeafFn, NetworkInference, padded_rows
from teachers.mcts.puct import PUCT
from teachers.mcts.puct_agent import PUCTAgent, make_puct_agent
from teachers.mcts.search import SearchResult

GAMES = ("tictactoe", "connect_four")
TINY = {"tictactoe": "mlp:32x1", "connect_four": "cnn:8x1"}


def engine_of(game: str) -> Engine:
    return get_game(game).make_engine()


def random_positions(game: str, n: int, seed: int) -> list[State]:
    """The states of ``n`` random games after every ply, finished games dropped."""
    engine = engine_of(game)
    rng = np.random.default_rng(seed)
    state = engine.reset(n)
    seen = [state]
    while True:
        live = np.flatnonzero(~engine.done(state))
        if live.size == 0:
            return seen
        state = engine.take(state, live)
        mask = engine.legal_mask(state).astype(bool)
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
        state, _, _ = engine.step(state, actions)
        seen.append(state)


def uniform(game: str) -> LeafFn:
    """A leaf function with equal logits and value 0: a search driven by the rules alone."""
    n_actions = get_game(game).num_actions

    def fn(obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(obs), n_actions), np.float32), np.zeros(len(obs), np.float32)

    return fn


def tiny_net(game: str, seed: int = 0) -> StudentNet:
    return build_student(TINY[game], game, seed)


def positions(engine: Engine, games: Sequence[Sequence[int]]) -> State:
    return engine.concat([engine.from_moves([g]) for g in games])  # type: ignore[attr-defined]


def best_moves(result: SearchResult) -> np.ndarray:
    return result.policy(0.0).argmax(axis=1)


def immediate_wins(engine: Engine, state: State) -> set[int]:
    legal = np.flatnonzero(engine.legal_mask(state)[0])
    _, rewards, done = engine.step(engine.take(state, np.zeros(len(legal), dtype=int)), legal)
    mover = int(engine.to_play(state)[0])
    return set(legal[done & (rewards[:, mover] > 0)].tolist())


def only_safe_move(engine: Engine, state: State) -> int | None:
    legal = np.flatnonzero(engine.legal_mask(state)[0])
    after, _, _ = engine.step(engine.take(state, np.zeros(len(legal), dtype=int)), legal)
    safe = [a for i, a in enumerate(legal)
            if not immediate_wins(engine, engine.take(after, np.array([i])))]
    return int(safe[0]) if len(safe) == 1 else None


# ---------------------------------------------------------------- kernels


@pytest.mark.parametrize("game", GAMES)
def test_kernels_equal_the_engine_on_random_games(game: str) -> None:
    engine, gid = engine_of(game), kernels.game_id(game)
    rng = np.random.default_rng(1)
    for state in random_positions(game, 60, seed=2):
        live = np.flatnonzero(~engine.done(state))
        state = engine.take(state, live)
        if not len(live):
            continue
        mover, occupied = kernels.from_engine_state(gid, engine, state)
        obs, mask = engine.observe(state)
        got_obs = np.zeros_like(obs)
        kernels.observe_batch(gid, mover, occupied, got_obs)
        assert np.array_equal(got_obs, obs)
        got_mask = np.zeros(mask.shape, dtype=np.int8)
        kernels.legal_batch(gid, occupied, got_mask)
        assert np.array_equal(got_mask, mask)
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
        after, rewards, done = engine.step(state, actions)
        n = len(actions)
        m2, o2 = np.zeros(n, np.int64), np.zeros(n, np.int64)
        won, full = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        kernels.play_batch(gid, mover, occupied, actions, m2, o2, won, full)
        assert np.array_equal(won, rewards.any(axis=1))
        assert np.array_equal(won | full, done)
        mover_after, occupied_after = kernels.from_engine_state(gid, engine, after)
        assert np.array_equal(o2, occupied_after)
        assert np.array_equal(m2[~done], mover_after[~done])


@pytest.mark.parametrize("game", GAMES)
def test_canonical_forms_are_invariant_under_the_symmetries(game: str) -> None:
    engine, gid = engine_of(game), kernels.game_id(game)
    syms = symmetries(game)
    for state in random_positions(game, 30, seed=3)[:-1]:
        state = engine.take(state, np.flatnonzero(~engine.done(state)))
        mover, occupied = kernels.from_engine_state(gid, engine, state)
        obs, mask = engine.observe(state)
        n = len(mover)
        keys, chosen = np.zeros(n, np.int64), np.zeros(n, np.int64)
        kernels.canonical_batch(gid, mover, occupied, kernels.TTT_IMAGES, keys, chosen)
        for k, sym in enumerate(syms):
            m_k, o_k = np.zeros(n, np.int64), np.zeros(n, np.int64)
            kernels.image_batch(gid, mover, k, kernels.TTT_IMAGES, m_k)
            kernels.image_batch(gid, occupied, k, kernels.TTT_IMAGES, o_k)
            # the bitboard image is the symmetry's image of the observation ...
            obs_k = np.zeros_like(obs)
            kernels.observe_batch(gid, m_k, o_k, obs_k)
            assert np.array_equal(obs_k, sym.apply_obs(obs))
            mask_k = np.zeros(mask.shape, dtype=np.int8)
            kernels.legal_batch(gid, o_k, mask_k)
            assert np.array_equal(mask_k, sym.apply_actions(mask))
            assert np.array_equal(kernels.ACTION_MAPS[gid][k], sym.actions)
            # ... and every image has the same canonical key
            keys_k, chosen_k = np.zeros(n, np.int64), np.zeros(n, np.int64)
            kernels.canonical_batch(gid, m_k, o_k, kernels.TTT_IMAGES, keys_k, chosen_k)
            assert np.array_equal(keys_k, keys)
        # the image under the symmetry canonical names has the canonical key
        for i in range(n):
            s = int(chosen[i])
            m_c = kernels.image(gid, int(mover[i]), s, kernels.TTT_IMAGES)
            o_c = kernels.image(gid, int(occupied[i]), s, kernels.TTT_IMAGES)
            assert kernels.position_key(gid, m_c, o_c) == keys[i]
    # keys tell positions apart
    all_keys = set()
    for state in random_positions(game, 40, seed=4):
        mover, occupied = kernels.from_engine_state(gid, engine, state)
        for m, o in zip(mover.tolist(), occupied.tolist(), strict=True):
            all_keys.add((kernels.position_key(gid, m, o), (m, o)))
    assert len({k for k, _ in all_keys}) == len({p for _, p in all_keys})


@pytest.mark.parametrize("game", GAMES)
def test_immediate_outcomes_are_what_the_rules_say(game: str) -> None:
    engine, gid = engine_of(game), kernels.game_id(game)
    found = {1.0: 0, -1.0: 0}
    for state in random_positions(game, 40, seed=14):
        state = engine.take(state, np.flatnonzero(~engine.done(state)))
        mover, occupied = kernels.from_engine_state(gid, engine, state)
        n = len(mover)
        outcome, plies = np.zeros(n), np.zeros(n, np.int64)
        kernels.immediate_outcome_batch(gid, mover, occupied, outcome, plies)
        for i in range(n):
            one = engine.take(state, np.array([i]))
            wins = immediate_wins(engine, one)
            assert (outcome[i] == 1.0) == bool(wins)
            if outcome[i] == -1.0:  # every move lets the opponent win at once
                legal = np.flatnonzero(engine.legal_mask(one)[0])
                after, _, done = engine.step(engine.take(one, np.zeros(len(legal), int)), legal)
                assert not done.any()
                assert all(immediate_wins(engine, engine.take(after, np.array([k])))
                           for k in range(len(legal)))
                assert plies[i] == 2
            if outcome[i]:
                found[float(outcome[i])] += 1
    assert found[1.0] > 10 and found[-1.0] > 3


# ---------------------------------------------------------------- search invariants


@pytest.mark.parametrize("game", GAMES)
@pytest.mark.parametrize("cached", [False, True])
def test_root_visits_sum_to_the_simulations(game: str, cached: bool) -> None:
    engine = engine_of(game)
    root = engine.take(random_positions(game, 20, seed=5)[2], np.arange(20))
    cache = EvaluationCache(1 << 12, get_game(game).num_actions) if cached else None
    search = PUCT(game, NetworkInference(tiny_net(game)), 60, cache=cache)
    result = search.search(engine, root, np.random.default_rng(0))
    # the first simulation expands the root; every later one passes through a root move
    assert (result.visits.sum(axis=1) == 59).all()
    assert (result.visits[~result.legal] == 0).all()
    assert np.allclose(result.prior.sum(axis=1), 1.0)
    assert (result.prior[~result.legal] == 0).all()
    assert search.stats.simulations == 20 * 60


TTT_WIN = [([0, 3, 1, 4], 2), ([4, 0, 2, 1], 6), ([0, 1, 4, 2], 8), ([8, 0, 5, 1], 2)]
TTT_BLOCK = [([0, 4, 1], 2), ([0, 4, 3], 6), ([2, 4, 5], 8), ([6, 4, 7], 8), ([8, 4, 5], 2)]


@pytest.mark.parametrize("net", ["uniform", "student"])
def test_tictactoe_wins_and_blocks(net: str) -> None:
    engine = engine_of("tictactoe")
    fn = uniform("tictactoe") if net == "uniform" else NetworkInference(tiny_net("tictactoe"))
    search = PUCT("tictactoe", fn, 200, cache=EvaluationCache(1 << 12, 9))
    rng = np.random.default_rng(1)
    win = search.search(engine, positions(engine, [m for m, _ in TTT_WIN]), rng)
    assert best_moves(win).tolist() == [w for _, w in TTT_WIN]
    assert win.solved[np.arange(4), [w for _, w in TTT_WIN]].all()
    assert (win.value == 1.0).all()
    block = search.search(engine, positions(engine, [m for m, _ in TTT_BLOCK]), rng)
    assert best_moves(block).tolist() == [b for _, b in TTT_BLOCK]


def test_a_lost_position_is_proven_lost() -> None:
    engine = engine_of("tictactoe")
    search = PUCT("tictactoe", uniform("tictactoe"), 300, cache=EvaluationCache(1 << 12, 9))
    # X holds 0 2 4 and threatens 1, 6 and 8; O (5 7) cannot block them all
    result = search.search(engine, positions(engine, [[0, 5, 2, 7, 4]]),
                           np.random.default_rng(0))
    assert result.solved[result.legal].all() and result.value[0] == -1.0
    assert (result.plies[result.legal] == 2).all()


@pytest.mark.slow
def test_connect_four_solved_wins_and_blocks() -> None:
    """On solved positions with a win in one, it wins; with one safe move, it plays it."""
    solved = load_positions("connect_four_solved", "connect_four")
    engine = engine_of("connect_four")
    wins: list[tuple[int, set[int]]] = []
    blocks: list[tuple[int, int]] = []
    for i in range(len(solved)):
        state = engine.take(solved.state, np.array([i]))
        winning = immediate_wins(engine, state)
        if winning:
            wins.append((i, winning))
        elif (safe := only_safe_move(engine, state)) is not None:
            assert solved.optimal[i, safe]
            blocks.append((i, safe))
    assert len(wins) >= 40 and len(blocks) >= 30
    rows = [i for i, _ in wins[:40]] + [i for i, _ in blocks[:30]]
    search = PUCT("connect_four", NetworkInference(tiny_net("connect_four")), 200,
                  cache=EvaluationCache(1 << 14, 7))
    chosen = best_moves(search.search(engine, engine.take(solved.state, np.array(rows)),
                                      np.random.default_rng(2)))
    assert all(int(c) in w for c, (_, w) in zip(chosen[:40], wins[:40], strict=True))
    assert chosen[40:].tolist() == [b for _, b in blocks[:30]]


def _search(game: str, root: State, seed: int, *, cached: bool = True,
            symmetry: bool = True, sims: int = 80) -> SearchResult:
    cache = EvaluationCache(1 << 12, get_game(game).num_actions) if cached else None
    search = PUCT(game, NetworkInference(tiny_net(game)), sims, cache=cache, symmetry=symmetry,
                  dirichlet_alpha=0.5)
    return search.search(engine_of(game), root, np.random.default_rng(seed))


@pytest.mark.parametrize("game", [
    "tictactoe", pytest.param("connect_four", marks=pytest.mark.slow)])
def test_same_seed_same_tree_whatever_the_batch_and_cache(game: str) -> None:
    engine = engine_of(game)
    root = engine.take(random_positions(game, 12, seed=6)[3], np.arange(12))
    a, b = _search(game, root, 7), _search(game, root, 7)
    assert np.array_equal(a.visits, b.visits) and np.array_equal(a.prior, b.prior)
    assert not np.array_equal(a.visits, _search(game, root, 8).visits)
    # Rows searched alone or with others, with or without a cache, get the same tree
    # from the same stream (a row generator gives a row the same numbers in any batch).
    from arena.streams import RowGenerator

    def rows(idx: np.ndarray, **kw: bool) -> SearchResult:
        search = PUCT(game, NetworkInference(tiny_net(game)), 80, dirichlet_alpha=0.5,
                      symmetry=True,
                      cache=EvaluationCache(1 << 12, engine.num_actions)
                      if kw.get("cached", True) else None)
        return search.search(engine, engine.take(root, idx), RowGenerator(9, idx))

    whole = rows(np.arange(12))
    for idx in (np.arange(5), np.arange(5, 12)):
        for cached in (True, False):
            part = rows(idx, cached=cached)
            assert np.array_equal(part.visits, whole.visits[idx])
            assert np.array_equal(part.value, whole.value[idx])


@pytest.mark.parametrize("game", GAMES)
def test_the_cache_returns_what_the_network_says(game: str) -> None:
    engine, gid = engine_of(game), kernels.game_id(game)
    root = random_positions(game, 16, seed=10)[2]
    net = tiny_net(game)
    cache = EvaluationCache(1 << 12, engine.num_actions)
    PUCT(game, NetworkInference(net), 1, cache=cache, symmetry=False).search(
        engine, root, np.random.default_rng(0))
    mover, occupied = kernels.from_engine_state(gid, engine, root)
    obs, _ = engine.observe(root)
    n = padded_rows(len(obs))
    x = torch.from_numpy(np.concatenate([obs, obs[: n - len(obs)]]))
    with torch.no_grad():
        logits, value = net(x)
    for i, (m, o) in enumerate(zip(mover.tolist(), occupied.tolist(), strict=True)):
        hit = cache.get(kernels.position_key(gid, m, o))
        assert hit is not None
        assert np.array_equal(hit[0], logits[i].numpy()) and hit[1] == value[i].item()
    # A cached search is the search without the cache, tree for tree (fp32).
    roots = random_positions(game, 10, seed=11)[3]
    shared = EvaluationCache(1 << 12, engine.num_actions)
    for repeat, symmetry in ((0, False), (1, False), (2, True)):
        with_cache = PUCT(game, NetworkInference(net), 60, cache=shared,
                          symmetry=symmetry).search(engine, roots, np.random.default_rng(repeat))
        without = PUCT(game, NetworkInference(net), 60, cache=None, symmetry=symmetry).search(
            engine, roots, np.random.default_rng(repeat))
        assert np.array_equal(with_cache.visits, without.visits)
        assert np.array_equal(with_cache.q, without.q)


def test_symmetric_positions_share_one_evaluation() -> None:
    engine = engine_of("connect_four")
    root = positions(engine, [[0, 1], [6, 5]])  # mirror images
    search = PUCT("connect_four", NetworkInference(tiny_net("connect_four")), 40,
                  cache=EvaluationCache(1 << 12, 7), symmetry=True)
    result = search.search(engine, root, np.random.default_rng(0))
    assert search.stats.repeats + search.stats.cache_hits >= 39
    assert np.array_equal(result.prior[0], result.prior[1][::-1])


@pytest.mark.parametrize("game", [
    "tictactoe", pytest.param("connect_four", marks=pytest.mark.slow)])
def test_same_moves_whatever_the_shard_size(game: str, tmp_path: Path) -> None:
    save_student(tiny_net(game), tmp_path / "s")
    agent = make_agent(f"puct:{tmp_path / 's'},sims=24,t=1", game)
    assert isinstance(agent, PUCTAgent)
    results = [
        play_matches(game, agent, make_agent("random", game), 14, seed=3, record=True,
                     shard_games=shard)
        for shard in (7, 14)
    ]
    assert results[0].records is not None and results[1].records is not None
    assert len(results[0].records) == len(results[1].records) == 14
    for a, b in zip(results[0].records, results[1].records, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(results[0].outcome, results[1].outcome)


@pytest.mark.parametrize("game", GAMES)
def test_onnx_inference_agrees_with_torch_and_ignores_the_batch(game: str) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from teachers.mcts.inference import OnnxInference

    net = tiny_net(game)
    onnx = OnnxInference(net)
    obs = np.concatenate([engine_of(game).observe(s)[0] for s in random_positions(game, 8, 12)])
    mask = np.ones((len(obs), get_game(game).num_actions), dtype=np.int8)
    logits, value = onnx(obs, mask)
    ref_logits, ref_value = NetworkInference(net)(obs, mask)
    assert np.allclose(logits, ref_logits, atol=1e-4) and np.allclose(value, ref_value, atol=1e-4)
    for start, stop in ((0, 1), (3, 10), (5, len(obs))):
        part_logits, part_value = onnx(obs[start:stop], mask[start:stop])
        assert np.array_equal(part_logits, logits[start:stop])
        assert np.array_equal(part_value, value[start:stop])


def test_bf16_inference_stays_close_to_fp32() -> None:
    from teachers.mcts.inference import bf16_native

    net = tiny_net("connect_four")
    if not bf16_native():
        with pytest.raises(TlmError, match="native bfloat16"):
            NetworkInference(net, precision="bf16")
        return
    obs = np.concatenate([engine_of("connect_four").observe(s)[0]
                          for s in random_positions("connect_four", 8, 13)])
    mask = np.ones((len(obs), 7), dtype=np.int8)
    _, value = NetworkInference(net, precision="bf16", channels_last=True)(obs, mask)
    _, ref = NetworkInference(net)(obs, mask)
    assert np.abs(value - ref).max() <= 0.02


# ---------------------------------------------------------------- spec and bad input


def test_spec_builds_the_search(tmp_path: Path) -> None:
    save_student(tiny_net("connect_four"), tmp_path / "c4")
    agent = make_puct_agent(f"{tmp_path / 'c4'},sims=50,c=2,t=0.5,noise=0.3,cache=1000,sym=0",
                            get_game("connect_four"))
    assert agent.puct.n_simulations == 50 and agent.puct.c_puct == 2.0
    assert agent.temperature == 0.5 and agent.puct.dirichlet_alpha == 0.3
    assert agent.puct.cache is not None and agent.puct.cache.entries == 1024
    assert not agent.puct.symmetry and agent.puct.prove
    assert 16 <= (agent.max_batch or 0) <= 1024
    no_cache = make_puct_agent(f"{tmp_path / 'c4'},cache=0", get_game("connect_four"))
    assert no_cache.puct.cache is None and no_cache.puct.n_simulations == 400
    assert not no_cache.puct.symmetry
    assert make_puct_agent(f"{tmp_path / 'c4'},sym=1", get_game("connect_four")).puct.symmetry


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("puct:{ttt}", "is for tictactoe, not connect_four"),
        ("puct:random", "has no value head"),
        ("puct:{c4},sims=0", "simulations must be a whole number in 1..100,000"),
        ("puct:{c4},sims=100001", "simulations must be a whole number in 1..100,000"),
        ("puct:{c4},sims=2.5", "simulations must be a whole number"),
        ("puct:{c4},sims=lots", "bad value in puct option 'sims=lots'"),
        ("puct:{c4},depth=3", "unknown puct option 'depth=3'"),
        ("puct:{c4},c=-1", "c_puct must be >= 0"),
        ("puct:{c4},sym=2", "sym must be a whole number in 0..1"),
        ("puct:", "needs an argument"),
        ("puct:{c4},bf16=1,onnx=1", "bf16 and onnx exclude each other"),
    ],
)
def test_bad_specs_are_one_line_errors(
    spec: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_student(tiny_net("tictactoe"), tmp_path / "ttt")
    save_student(tiny_net("connect_four"), tmp_path / "c4")
    spec = spec.format(ttt=tmp_path / "ttt", c4=tmp_path / "c4")
    with pytest.raises(TlmError, match=message.replace("(", r"\(").replace(".", r"\.")):
        make_agent(spec, "connect_four")
    code = main(["eval", "--game", "connect_four", "--agent", spec, "--opponents", "random",
                 "--games", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_search_refuses_finished_games_and_other_engines() -> None:
    engine = engine_of("tictactoe")
    search = PUCT("tictactoe", uniform("tictactoe"), 10)
    finished = positions(engine, [[0, 3, 1, 4, 2]])
    with pytest.raises(TlmError, match="finished game"):
        search.search(engine, finished, np.random.default_rng(0))
    with pytest.raises(TlmError, match="plays tictactoe, not connect_four"):
        search.search(engine_of("connect_four"), engine_of("connect_four").reset(1),
                      np.random.default_rng(0))
    with pytest.raises(TlmError, match="fast search plays"):
        PUCT("leduc_holdem", uniform("tictactoe"), 10)
