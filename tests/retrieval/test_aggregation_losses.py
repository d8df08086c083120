import math

import pytest
import torch

from popdistill.errors import UserError
from popdistill.retrieval.aggregation import create_phi, list_phis
from popdistill.retrieval.losses import (
    create_distance,
    list_distances,
    max_margin_ranking_loss,
    teachtext_loss,
    teachtext_loss_parts,
)

A = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
B = torch.tensor([[3.0, 0.0], [1.0, 8.0]])
C = torch.tensor([[2.0, 5.0], [2.0, 0.0]])


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mean", [[2.0, 7 / 3], [2.0, 4.0]]),
        ("max", [[3.0, 5.0], [3.0, 8.0]]),
        ("min", [[1.0, 0.0], [1.0, 0.0]]),
        ("median", [[2.0, 2.0], [2.0, 4.0]]),
    ],
)
def test_phi_hand_checked(name, expected):
    out = create_phi(name)([A, B, C])  # a list is stacked
    torch.testing.assert_close(out, torch.tensor(expected))
    torch.testing.assert_close(create_phi(name)(torch.stack([A, B, C])), out)


def test_median_of_even_count_is_mean_of_middle_two():
    torch.testing.assert_close(create_phi("median")([A, B]), torch.tensor([[2.0, 1.0], [2.0, 6.0]]))


def test_weighted_normalises_validation_scores():
    out = create_phi("weighted", weights=[10.0, 0.0, 30.0])([A, B, C])  # -> 0.25 A + 0.75 C
    torch.testing.assert_close(out, torch.tensor([[1.75, 4.25], [2.25, 1.0]]))
    with pytest.raises(UserError, match="needs weights"):
        create_phi("weighted")
    with pytest.raises(UserError, match="2 weights for 3 teachers"):
        create_phi("weighted", weights=[1.0, 1.0])([A, B, C])
    with pytest.raises(UserError, match=">= 0"):
        create_phi("weighted", weights=[1.0, -1.0, 1.0])


def test_unknown_names_list_the_valid_ones():
    assert list_phis() == ["max", "mean", "median", "min", "weighted"]
    with pytest.raises(UserError, match="max, mean, median, min, weighted"):
        create_phi("avg")
    assert list_distances() == ["kl", "l2", "smooth_l1"]
    with pytest.raises(UserError, match="kl, l2, smooth_l1"):
        create_distance("cosine")


def test_ranking_loss_hand_checked():
    s = torch.tensor([[0.5, 0.2], [0.45, 0.1]])
    # text->video: (0,1) relu(.1-.5+.2)=0, (1,0) relu(.1-.1+.45)=.45
    # video->text: video 1 vs caption 0: relu(.1-.1+.2)=.2; video 0 vs caption 1: relu(.1-.5+.45)=.05
    assert max_margin_ranking_loss(s, margin=0.1).item() == pytest.approx(0.7 / 4)


def test_ranking_loss_matches_pairwise_definition_and_ignores_diagonal():
    torch.manual_seed(0)
    s = torch.randn(5, 5)
    m = 0.2
    terms = [
        max(0.0, m - s[i, i].item() + s[i, j].item())
        + max(0.0, m - s[i, i].item() + s[j, i].item())
        for i in range(5)
        for j in range(5)
        if i != j
    ]
    assert max_margin_ranking_loss(s, margin=m).item() == pytest.approx(sum(terms) / 40, rel=1e-6)
    # well separated positives: zero loss, and the (margin-sized) diagonal terms never count
    assert max_margin_ranking_loss(torch.eye(4), margin=0.5).item() == 0.0


def test_distances_hand_checked():
    zero = torch.zeros(2, 2)
    target = torch.tensor([[0.5, 2.0], [-1.0, 0.0]])
    # smooth-L1 (beta 1): 0.5*0.25, 2-0.5, 1-0.5, 0
    assert create_distance("smooth_l1")(zero, target).item() == pytest.approx(2.125 / 4)
    assert create_distance("l2")(zero, target).item() == pytest.approx(5.25 / 4)
    # KL(target || student) of row softmaxes: row 0 target probs (0.75, 0.25), row 1 uniform.
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    want = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    assert create_distance("kl")(zero, logits).item() == pytest.approx(want)
    p = math.sqrt(3) / (math.sqrt(3) + 1)  # softmax of (ln 3 / 2, 0)
    want_t2 = (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))) / 2
    assert create_distance("kl", temperature=2.0)(zero, logits).item() == pytest.approx(want_t2)
    assert create_distance("kl")(logits, logits).item() == pytest.approx(0.0, abs=1e-7)


def test_teachtext_loss_value_and_parts():
    student = torch.tensor([[0.5, 0.2], [0.45, 0.1]])
    t1, t2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0], [0.2, 0.6]])
    parts = teachtext_loss_parts(student, [t1, t2], phi="mean", d="l2", lam=2.0, margin=0.1)
    target = (t1 + t2) / 2
    want_d = ((student - target) ** 2).mean().item()
    torch.testing.assert_close(parts["target"], target)
    assert parts["ranking"].item() == pytest.approx(0.175)
    assert parts["distill"].item() == pytest.approx(want_d)
    total = teachtext_loss(student, torch.stack([t1, t2]), "mean", "l2", lam=2.0, margin=0.1)
    assert total.item() == pytest.approx(0.175 + 2.0 * want_d)
    with pytest.raises(ValueError, match="do not match"):
        teachtext_loss(student, [torch.zeros(3, 3)])


def test_gradients_do_not_reach_teachers():
    torch.manual_seed(0)
    x = torch.randn(6, 4)
    student_net, teacher_net = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    s_student = student_net(x) @ x.T
    teachers = [teacher_net(x) @ x.T, (2 * teacher_net(x)) @ x.T]
    leaf = torch.randn(6, 6, requires_grad=True)
    loss = teachtext_loss(s_student, teachers + [leaf], phi="max", d="smooth_l1", lam=1.0)
    loss.backward()
    assert student_net.weight.grad is not None and student_net.weight.grad.abs().sum() > 0
    assert teacher_net.weight.grad is None and leaf.grad is None

    # the student's gradient is that of ranking + d against a constant target
    s = torch.randn(6, 6, requires_grad=True)
    teacher = torch.randn(6, 6)
    teachtext_loss(s, [teacher], phi="mean", d="l2", lam=3.0, margin=0.09).backward()
    s2 = s.detach().clone().requires_grad_(True)
    (max_margin_ranking_loss(s2, 0.09) + 3.0 * ((s2 - teacher) ** 2).mean()).backward()
    torch.testing.assert_close(s.grad, s2.grad)
