"""Tic-tac-toe players with styles, and the exact best response to a known opponent."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from arena import TlmError, evaluate, get_game, make_agent, play_matches
from arena.players.tictactoe import (
    FULL,
    LINE_MASKS,
    N_SQUARES,
    all_positions,
    board_keys,
    optimal_moves_mask,
    solved,
)
from teachers.best_response import (
    BestResponseTeacher,
    SeriesTeacher,
    best_response,
    cautious_response,
    expected_score,
    opponent_errors,
    policy_table,
    tactical_answers,
)

GAME = get_game("tictactoe")
STYLES = ["noisy:0.3", "prefer:corners", "prefer:left,p=0.5", "blind:diagonals",
          "blind:row0+col1", "minimax:2"]


@pytest.mark.parametrize("spec", STYLES)
def test_a_style_is_a_distribution_over_legal_moves_everywhere(spec: str) -> None:
    obs, mask = all_positions()
    probs = make_agent(spec, GAME).policy(obs, mask)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs[mask == 0] == 0).all()


def test_styles_keep_their_habits() -> None:
    obs, mask = all_positions()
    keys = solved().keys
    mine, theirs = keys & FULL, keys >> N_SQUARES
    wins = np.array([any((m | 1 << a) & line == line for line in LINE_MASKS)
                     and not (m | t) >> a & 1 for m, t in zip(mine, theirs, strict=True)
                     for a in range(N_SQUARES)]).reshape(len(keys), N_SQUARES)
    blocks = np.array([any((t | 1 << a) & line == line for line in LINE_MASKS)
                       and not (m | t) >> a & 1 for m, t in zip(mine, theirs, strict=True)
                       for a in range(N_SQUARES)]).reshape(len(keys), N_SQUARES)
    can_win = wins.any(axis=1)
    # A win-else-block player takes a win whenever it has one...
    prefer = make_agent("prefer:corners", GAME).policy(obs, mask)
    assert (prefer[can_win] * ~wins[can_win]).sum() == 0
    # ... and otherwise, with nothing to block, a free corner when there is one.
    corners = np.zeros(N_SQUARES, dtype=bool)
    corners[[0, 2, 6, 8]] = True
    free_corner = ((mask != 0) & corners).any(axis=1)
    calm = ~can_win & ~blocks.any(axis=1) & free_corner
    assert calm.sum() > 100
    assert np.allclose(prefer[calm][:, corners].sum(axis=1), 1.0)
    # A player blind to the diagonals misses a diagonal-only win.
    blind = make_agent("blind:diagonals", GAME)
    o = np.zeros((1, 3, 3, 2), dtype=np.int8)
    o[0, 0, 0, 0] = o[0, 1, 1, 0] = 1  # its stones at 0 and 4: square 8 wins on the diagonal
    o[0, 0, 1, 1] = o[0, 0, 2, 1] = 1  # the opponent's at 1 and 2
    m = (o.sum(axis=3) == 0).reshape(1, 9).astype(np.int8)
    assert blind.policy(o, m)[0, 8] < 1.0
    assert make_agent("prefer:corners", GAME).policy(o, m)[0, 8] == 1.0
    # Full-depth minimax plays exactly the optimal moves.
    full = make_agent("minimax:9", GAME).policy(obs, mask) > 0
    assert (full == (optimal_moves_mask(obs) != 0)).all()


@pytest.mark.parametrize("spec", ["noisy:2", "noisy", "prefer:x", "prefer:corners,q=1",
                                  "blind:foo", "minimax:0", "minimax:a", "minimax:10"])
def test_bad_style_specs_are_one_line(spec: str) -> None:
    with pytest.raises(TlmError) as info:
        make_agent(spec, GAME)
    assert "\n" not in str(info.value)
    # minimax: plays tic-tac-toe only (the other kinds have connect-four players).
    with pytest.raises(TlmError, match="tictactoe"):
        make_agent("minimax:2", "connect_four")


def _brute_force(us: int, them: int, our_move: bool, theirs: dict[int, np.ndarray]) -> float:
    """The best expected score from a position by trying every deterministic plan: each
    of our decision positions gets one move, in every combination."""
    decisions: list[tuple[int, int]] = []

    def collect(u: int, t: int, ours: bool) -> None:
        empty = FULL & ~(u | t)
        if not empty or any(t & m == m for m in LINE_MASKS) or any(
                u & m == m for m in LINE_MASKS):
            return
        if ours:
            if (u, t) not in decisions:
                decisions.append((u, t))
            for a in range(N_SQUARES):
                if empty >> a & 1:
                    collect(u | 1 << a, t, False)
        else:
            for a in range(N_SQUARES):
                if empty >> a & 1:
                    collect(u, t | 1 << a, True)

    collect(us, them, our_move)
    options = [[a for a in range(N_SQUARES) if (FULL & ~(u | t)) >> a & 1]
               for u, t in decisions]

    def play(plan: dict[tuple[int, int], int], u: int, t: int, ours: bool) -> float:
        if any(u & m == m for m in LINE_MASKS):
            return 1.0
        if any(t & m == m for m in LINE_MASKS):
            return 0.0
        if not FULL & ~(u | t):
            return 0.5
        if ours:
            return play(plan, u | 1 << plan[(u, t)], t, False)
        probs = theirs[t | u << N_SQUARES]
        return sum(p * play(plan, u, t | 1 << a, True) for a, p in enumerate(probs) if p > 0)

    return max(play(dict(zip(decisions, choice, strict=True)), us, them, our_move)
               for choice in itertools.product(*options))


@pytest.mark.parametrize("spec", ["noisy:0.3", "prefer:edges", "minimax:2", "random"])
def test_the_best_response_equals_brute_force_on_late_positions(spec: str) -> None:
    opponent = make_agent(spec, GAME)
    br = best_response(opponent)
    theirs = policy_table(opponent)
    rng = np.random.default_rng(0)
    late = [k for k in br.moves if bin(k).count("1") >= 5]
    for key in rng.choice(late, size=12, replace=False).tolist():
        us, them = key & FULL, key >> N_SQUARES
        assert br.value[key] == pytest.approx(_brute_force(us, them, True, theirs), abs=1e-12)


def test_no_player_does_better_than_the_best_response() -> None:
    perfect = make_agent("perfect", GAME)
    for spec in ("noisy:0.3", "prefer:left,p=0.5", "blind:rows", "minimax:3"):
        opponent = make_agent(spec, GAME)
        br = best_response(opponent)
        for player in (perfect, make_agent("heuristic", GAME), opponent):
            for seat in (0, 1):
                assert expected_score(player, opponent, seat) <= br.scores[seat] + 1e-12
    # Against the perfect player nothing wins: the best response draws in both seats.
    assert best_response(perfect).scores == pytest.approx((0.5, 0.5))


def _gives_up(response_moves: dict[int, int]) -> bool:
    """Whether any move of a response turns a position it does not lose into a lost one."""
    value = solved().value
    for key, moves in response_moves.items():
        if value[key] < 0:
            continue
        us, them = key & FULL, key >> N_SQUARES
        for a in range(N_SQUARES):
            child = us | 1 << a
            if moves >> a & 1 and not any(child & m == m for m in LINE_MASKS) \
                    and value[them | child << N_SQUARES] > 0:
                return True
    return False


def test_the_safe_best_response_never_gives_the_game_up() -> None:
    perfect = make_agent("perfect", GAME)
    for spec in ("random", "prefer:left", "noisy:0.3"):
        opponent = make_agent(spec, GAME)
        safe, free = best_response(opponent, safe=True), best_response(opponent)
        assert not _gives_up(safe.moves)
        for seat in (0, 1):
            assert expected_score(perfect, opponent, seat) - 1e-12 <= safe.scores[seat]
            assert safe.scores[seat] <= free.scores[seat] + 1e-12
    # The unrestricted response to random does risk lost positions for a higher score.
    random = make_agent("random", GAME)
    assert _gives_up(best_response(random).moves)
    assert best_response(random, safe=True).score < best_response(random).score


def _loss_probability(moves: dict[int, int], opponent: object, seat: int) -> float:
    """The exact probability that the responder, uniform over ``moves``, loses a game
    to ``opponent`` from ``seat``."""
    theirs = policy_table(opponent)  # type: ignore[arg-type]

    def lose(us: int, them: int, our_move: bool) -> float:
        if not FULL & ~(us | them):
            return 0.0
        if our_move:
            bits = moves[us | them << N_SQUARES]
            children = [us | 1 << a for a in range(N_SQUARES) if bits >> a & 1]
            return sum(0.0 if any(c & m == m for m in LINE_MASKS) else lose(c, them, False)
                       for c in children) / len(children)
        p = theirs[them | us << N_SQUARES]
        total = 0.0
        for a in np.flatnonzero(p):
            child = them | 1 << int(a)
            won = any(child & m == m for m in LINE_MASKS)
            total += p[a] * (1.0 if won else lose(us, child, True))
        return total

    return lose(0, 0, seat == 0)


def test_a_loss_weight_trades_a_little_score_for_no_loss_to_random() -> None:
    random = make_agent("random", GAME)
    exact, averse = best_response(random), best_response(random, loss_weight=2.0)
    # The exact response to random risks losing in the second seat; at weight 2 it never does.
    assert _loss_probability(exact.moves, random, 1) > 0.005
    assert _loss_probability(averse.moves, random, 0) == 0.0
    assert _loss_probability(averse.moves, random, 1) == 0.0
    assert averse.score < exact.score
    # Its scores are the expected scores of the moves it chose, no better than the exact
    # response's, and no worse than perfect's.
    perfect = make_agent("perfect", GAME)
    for spec in ("random", "prefer:left,p=0.75", "prefer:bottom,p=0.5"):
        opponent = make_agent(spec, GAME)
        free, safe = best_response(opponent), best_response(opponent, loss_weight=2.0)
        for seat in (0, 1):
            assert expected_score(perfect, opponent, seat) - 1e-12 <= safe.scores[seat]
            assert safe.scores[seat] <= free.scores[seat] + 1e-12
    # It keeps most of the exploit of a deterministic habit, which risks nothing.
    left = make_agent("prefer:left", GAME)
    assert best_response(left, loss_weight=2.0).score == pytest.approx(best_response(left).score)
    with pytest.raises(TlmError, match="loss_weight"):
        best_response(random, loss_weight=-1.0)


def test_the_best_response_teacher_scores_what_expectimax_says() -> None:
    opponent = make_agent("prefer:left,p=0.5", GAME)
    teacher = BestResponseTeacher(opponent)
    teacher.greedy = False  # sample among the best moves
    rows = evaluate(GAME, teacher, [opponent], 4000, seed=3)
    both = next(r for r in rows if r.seat == "both")
    assert both.ci95[0] <= teacher.response.score <= both.ci95[1]
    # It is no worse than perfect play wherever the opponent cannot lead the game.
    obs, mask = all_positions()
    probs = teacher.policy(obs, mask)
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_the_cautious_response_risks_nothing_until_the_opponent_errs() -> None:
    table = solved()
    for spec in ("prefer:left,p=0.5", "heuristic", "perfect"):
        opponent = make_agent(spec, GAME)
        c = cautious_response(opponent)
        # Before an error it keeps to the optimal moves, so nobody can beat it...
        for key, bits in c.moves.items():
            assert bits and bits & ~int(table.optimal[key]) == 0
        for seat in (0, 1):
            assert expected_score(make_agent("perfect", GAME), opponent, seat) - 1e-12 \
                <= c.scores[seat] <= c.response.scores[seat] + 1e-12
    # ... the perfect player never errs, and it is safe there; the one-side player always
    # errs when it moves second, and from the next game on it gets the best response.
    perfect = cautious_response(make_agent("perfect", GAME))
    assert perfect.scores == pytest.approx((0.5, 0.5)) and perfect.errs == (0.0, 0.0)
    left = cautious_response(make_agent("prefer:left", GAME))
    assert left.errs[0] == pytest.approx(1.0)
    curve = left.series_scores(4)
    assert curve[0] < left.response.score
    assert curve[1:] == pytest.approx([left.response.score] * 3)


def test_opponent_errors_are_the_moves_that_lower_the_value() -> None:
    obs, mask = all_positions()
    optimal = optimal_moves_mask(obs)
    rng = np.random.default_rng(0)
    actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
    assert (opponent_errors(obs, actions) == (optimal[np.arange(len(obs)), actions] == 0)).all()


@pytest.mark.parametrize("cautious", [True, False])
def test_the_series_teacher_scores_its_exact_curve_in_played_series(cautious: bool) -> None:
    opponent = make_agent("prefer:top,p=0.5", GAME)
    teacher = SeriesTeacher(opponent, cautious=cautious)
    k, n_series = 4, 3000
    result = play_matches(GAME, teacher, opponent, n_series * k, seed=5, series=k)
    scores = ((result.outcome + 1) / 2).reshape(n_series, k)
    exact = teacher.oracle(k)
    se = scores.std(axis=0) / np.sqrt(n_series)
    assert np.all(np.abs(scores.mean(axis=0) - exact) < 4 * se + 1e-9)
    if cautious:
        assert exact[0] < exact[-1] - 0.05  # it learns, in the series, that it may risk
        # The memory of an error is kept across the games of a series only.
        memory = teacher.initial_memory(1)
        memory[0, 0] = 1.0
        assert teacher.end_game(memory, np.array([1.0]))[0, 0] == 1.0
    else:
        assert np.allclose(exact, teacher.response.score)


def test_forced_answers_are_the_wins_taken_or_else_the_blocks() -> None:
    obs, mask = all_positions()
    rng = np.random.default_rng(1)
    actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
    forced, answered, won = tactical_answers(obs, actions)
    def completing(stones: int, empty: int) -> int:
        return sum(1 << a for a in range(N_SQUARES) if empty >> a & 1
                   and any((stones | 1 << a) & line == line for line in LINE_MASKS))

    for row in range(len(obs)):
        mine = int((obs[row, ..., 0].reshape(-1) * (1 << np.arange(9))).sum())
        theirs = int((obs[row, ..., 1].reshape(-1) * (1 << np.arange(9))).sum())
        empty = FULL & ~(mine | theirs)
        wins, blocks = completing(mine, empty), completing(theirs, empty)
        need = wins or blocks
        assert forced[row] == (need != 0 and empty & (empty - 1) != 0)
        assert answered[row] == (forced[row] and bool(need >> int(actions[row]) & 1))
        assert won[row] == bool(wins >> int(actions[row]) & 1)


def test_a_teacher_waiting_for_forced_answers_risks_nothing_against_who_missed_one() -> None:
    # Against random, once it has missed a win or a block, the teacher plays only the
    # optimal moves, so it cannot lose; the plain cautious teacher exploits it.
    opponent = make_agent("random", GAME)
    waiting = SeriesTeacher(opponent, cautious=True, forced_answers=3)
    plain = SeriesTeacher(opponent, cautious=True)
    optimal = solved().optimal
    risked = {}
    for name, teacher in (("waiting", waiting), ("plain", plain)):
        seen = []

        def observe(d, seen=seen) -> None:
            if d.player == 0:
                seen.append((board_keys(d.obs), d.actions.copy()))

        play_matches(GAME, teacher, opponent, 3000, seed=4, series=6, observer=observe)
        keys = np.concatenate([k for k, _ in seen])
        moves = np.concatenate([a for _, a in seen]).astype(np.int64)
        risked[name] = int(((optimal[keys].astype(np.int64) >> moves) & 1 == 0).sum())
    assert risked["waiting"] * 50 < risked["plain"]
    with pytest.raises(TlmError, match="cautious"):
        SeriesTeacher(opponent, cautious=False, forced_answers=2)
