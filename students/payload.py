"""How a student agent travels to a Ray worker: its network's safetensors bytes and the
config that rebuilds it, never a pickled module.

Registered with :func:`arena.runners.register_payload` when :mod:`students` is
imported, so a match, an evaluation or a DAgger collection spread over workers (even
on other machines, without the checkpoint directory) plays the student's current
weights.
"""

from __future__ import annotations

from typing import Any

from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from arena.games import Game
from students.agent import StudentAgent
from students.networks import DEFAULT_HEADS, StudentNet, parse_spec
from students.recurrent import RecurrentStudentAgent, RecurrentStudentNet


def student_payload(agent: StudentAgent | RecurrentStudentAgent) -> dict[str, Any]:
    """The agent as plain data: network spec, game, seed, heads, mode, greediness and
    weights."""
    net = agent.net
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    return {
        "spec": net.spec,
        "game": net.game,
        "seed": net.seed,
        "heads": getattr(net, "heads", DEFAULT_HEADS),
        "training": net.training,
        "greedy": agent.greedy,
        "weights": save_safetensors(state),
    }


def student_from_payload(data: dict[str, Any],
                         game: Game) -> StudentAgent | RecurrentStudentAgent:
    """The agent :func:`student_payload` describes (on the CPU)."""
    spec = parse_spec(data["spec"])
    if spec.arch == "gru":
        rnet = RecurrentStudentNet(spec, data["game"], data["seed"])
        rnet.load_state_dict(load_safetensors(data["weights"]), strict=True)
        rnet.train(data["training"])
        return RecurrentStudentAgent(rnet, greedy=data["greedy"])
    net = StudentNet(spec, data["game"], data["seed"], data["heads"])
    net.load_state_dict(load_safetensors(data["weights"]), strict=True)
    net.train(data["training"])
    return StudentAgent(net, greedy=data["greedy"])
