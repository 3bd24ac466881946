"""A person against an agent, one game, in a terminal.

The loop takes its input and output as functions so that it is the same in the CLI
and in tests: the board is shown after every move, the legal moves are listed, bad
input is asked for again, and the result is shown at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from arena.core import Agent, TlmError
from arena.games import Game, get_game


def play_human(
    game: str | Game,
    agent: Agent,
    human_seat: int,
    read: Callable[[str], str],
    write: Callable[[str], None],
    seed: int = 0,
) -> float:
    """Play one game between a person (seat ``human_seat``) and ``agent``.

    Args:
        game: a registry name or a :class:`Game`.
        agent: the opponent.
        human_seat: 0 to move first, 1 to move second.
        read: asks the person for a line (given the prompt); ``EOFError`` ends the game.
        write: shows a block of text.
        seed: seeds the game and the agent.

    Returns:
        The person's total reward.
    """
    g = get_game(game)
    if human_seat not in (0, 1):
        raise TlmError(f"seat must be 0 (first) or 1 (second), got {human_seat}")
    engine = g.make_engine()
    engine_seq, agent_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(agent_seq)
    state = engine.reset(1, seed=int(engine_seq.generate_state(1)[0]))
    total = 0.0
    write(engine.render(state, 0))
    while not engine.done(state)[0]:
        obs, mask = engine.observe(state)
        legal = np.flatnonzero(mask[0]).tolist()
        mover = int(engine.to_play(state)[0])
        if mover == human_seat:
            action = _ask_move(legal, read, write)
        else:
            action = int(agent.act(obs, mask, rng, state=engine.take(state, np.array([0])))[0])
            write(f"{agent.name} plays {action}")
        state, rewards, _ = engine.step(state, np.array([action]))
        total += float(rewards[0, human_seat])
        write(engine.render(state, 0))
    if total > 0:
        write(f"You win ({total:+g}).")
    elif total < 0:
        write(f"{agent.name} wins ({total:+g} for you).")
    else:
        write("Draw.")
    return total


def _ask_move(legal: list[int], read: Callable[[str], str], write: Callable[[str], None]) -> int:
    prompt = f"your move {legal}: "
    while True:
        text = read(prompt).strip()
        try:
            action = int(text)
        except ValueError:
            write(f"{text!r} is not a number; legal moves are {legal}")
            continue
        if action in legal:
            return action
        write(f"{action} is not legal here; legal moves are {legal}")
