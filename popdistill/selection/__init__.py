"""Which pseudo-labels each generation trains on.

    scores.py    a mask's score (generation 1: mean of its non-zero values), ScorePool and the
                 top-fraction threshold, edge density and its strata
    select.py    the selection rule (top fraction or threshold, per stratum) and the selected
                 store of generations >= 2
    store.py     the same rule on Ray Data over a teacher's store (generation 1), and the
                 selection's evaluation against ground truth
    rescore.py   generations >= 2: every candidate mask scored (EvalSeg-Net or agreement),
                 each frame's best kept
    labels.py    what a kept frame trains on (label rules) and the support step
    stats.py     the statistics logged per generation
"""
