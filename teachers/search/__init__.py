"""Search learners: expert iteration as a learner backend (``backend: search``).

A search learner is a student network whose own search is its teacher (the idea of
:mod:`distill.iterate`), behind the same learner protocol as the SB3 and RLlib
backends (:mod:`teachers.learner`), so a league rates PPO learners, search learners
and fixed references together. It plays the games the fast student-guided PUCT
plays: tic-tac-toe and connect four.

One ``train(steps, opponents, weights)`` call (one league round):

- the student guides PUCT (its policy as priors, its value at the leaves), which plays
  about ``steps`` of its moves against the league's picks, each game's opponent drawn
  with the picks' weights; an opponent that is the learner itself (the league's pick
  before any snapshot exists) means search against search. The games against one
  opponent run in lockstep, one batched search per move over all of them;
- every fully searched move is labelled with the root visit distribution and a value
  target, joins the replay window, and the student is fitted on the window (KL to the
  visit distributions plus the value's squared error, AdamW);
- the report gives the learner's score per opponent in those games, and the losses,
  the window's size and the time spent playing and fitting in ``extra``.

A league learner ``backend: search`` takes its settings under ``search:``
(:class:`SearchSettings`; the PPO keys ``net_arch``, ``n_envs`` and ``ppo`` are refused
there), for example::

    learners:
      - name: expert
        backend: search
        steps_per_round: 4096      # the learner's training moves per round
        snapshot_every: 16384
        search:
          student: res:32x3        # a fresh student: mlp:WxD, cnn:WxD or res:WxD
          simulations: 48          # a full search (a labelled move)
          fast_simulations: null   # playout-cap randomization: moves searched fast ...
          full_search_share: 1.0   # ... unless this share gets a full search
          c_puct: 1.5
          dirichlet_alpha: 1.0     # root noise of training searches (null: none)
          dirichlet_fraction: 0.25
          temperature_plies: 8     # sample moves from the visits for this many plies
          opening_plies: 0         # uniformly random opening plies of training games
          replay_size: 20000       # positions in the replay window
          epochs: 1                # passes over the window per round
          batch_size: 256
          lr: 0.001                # AdamW
          weight_decay: 0.0001
          value_weight: 1.0
          value_target: mix        # outcome, search (root value) or mix (their mean)
          augment: true            # fit the positions' symmetric images too
          play_with_search_sims: 0 # how it plays outside training (see below)

How it plays outside its training games (rating matches, other learners' training,
its snapshots): ``play_with_search_sims: 0`` (the default) plays the raw student,
greedy: one forward pass a move, so rating matches stay cheap and its rating measures
what the student itself learned; its snapshots are student checkpoints. With
``play_with_search_sims: N`` it plays its search with ``N`` simulations (no noise,
the most visited move), stronger and ``N`` times costlier a move; its snapshots are
``puct:PATH,sims=N,c=C``.

Resuming: the learner's checkpoint holds the student (safetensors and JSON), AdamW's
state, the replay window (Parquet), its counters and both generators' states, so a
league killed at any moment resumes to the result of one never stopped.

Modules:

- :mod:`~teachers.search.settings`: :class:`SearchSettings`, validated and checked
  against the game;
- :mod:`~teachers.search.games`: the training games against weighted opponents;
- :mod:`~teachers.search.replay`: the replay window and its Parquet file;
- :mod:`~teachers.search.learner`: :class:`SearchLearner`, the learner protocol.

The fit itself is :mod:`students.fit` (shared with :mod:`distill`, which sits above
this package), the labels :func:`teachers.mcts.labeller.search_labels` (shared with
``tlm iterate``).
"""

from teachers.search.learner import SearchLearner, self_play_settings
from teachers.search.settings import SearchSettings

__all__ = ["SearchLearner", "SearchSettings", "self_play_settings"]
