"""Every kind of plug-in is one Registry with the same three verbs and the same error."""

from __future__ import annotations

import importlib

import pytest

from popdistill import choices
from popdistill.errors import UserError
from popdistill.registry import Registry

# (module, the verbs' suffix, a built-in name)
KINDS = [
    ("popdistill.students", "student", "unet_tiny"),
    ("popdistill.students", "evalseg", "evalseg_tiny"),
    ("popdistill.data.readers", "reader", "davis"),
    ("popdistill.evaluate.baselines", "baseline", "centre"),
    ("popdistill.retrieval.text_encoders", "text_encoder", "tfidf"),
    ("popdistill.retrieval.aggregation", "phi", "mean"),
    ("popdistill.retrieval.losses", "distance", "smooth_l1"),
    ("popdistill.retrieval.experts", "expert", "colour"),
    ("popdistill.students.multinet", "ensemble", "geomean"),
    ("popdistill.selection.rescore", "scorer", "agreement"),
    ("popdistill.selection.labels", "label_rule", "multinet"),
    ("popdistill.train.losses", "loss", "bce"),
    ("popdistill.train.losses", "lr_schedule", "cosine"),
]


@pytest.mark.parametrize("module, kind, name", KINDS, ids=[k[1] for k in KINDS])
def test_every_kind_has_the_three_verbs_and_one_error(module, kind, name):
    mod = importlib.import_module(module)
    plural = {"evalseg": "evalseg", "loss": "losses"}.get(kind, kind + "s")
    register, create, names = (getattr(mod, f"register_{kind}"), getattr(mod, f"create_{kind}"),
                               getattr(mod, f"list_{plural}"))
    assert callable(register) and name in names() and names(name) == [name]
    assert names("zz-no-such-*") == []
    with pytest.raises(UserError, match=r"^unknown .+ 'zz-none'; valid names: " + ", ".join(names())):
        create("zz-none", *(["videos/"] if kind == "reader" else []))  # a reader needs its root


def test_option_names_known_without_torch_match_their_registries():
    from popdistill.selection.labels import list_label_rules
    from popdistill.selection.rescore import list_scorers
    from popdistill.students.multinet import list_ensembles
    from popdistill.train.losses import list_losses, list_lr_schedules

    for names, listed in ((choices.ENSEMBLES, list_ensembles()), (choices.SCORERS, list_scorers()),
                          (choices.LABEL_RULES, list_label_rules()), (choices.LOSSES, list_losses()),
                          (choices.LR_SCHEDULES, list_lr_schedules())):
        assert sorted(names) == listed


def test_registry_register_create_bind_and_twice():
    reg: Registry = Registry("thing", "thing")

    @reg.register
    def double(x: int = 1) -> int:
        return 2 * x

    reg.register("half")(lambda x: x / 2)
    assert reg.names() == ["double", "half"] and reg.names("d*") == ["double"]
    assert reg.create("double", x=4) == 8 and "half" in reg and "third" not in reg
    with pytest.raises(ValueError, match="thing 'double' registered twice"):
        reg.register(double)
    bound: Registry = Registry("fn", "function", bind=True)
    bound.register("add")(lambda a, b=0: a + b)
    assert bound.create("add", b=3)(1) == 4 and bound.create("add")(1) == 1


def test_a_builtin_module_missing_a_listed_name_is_refused():
    reg: Registry = Registry("thing", "thing", builtin="popdistill.errors", names=("a", "b"))
    reg.register("a")(object)
    with pytest.raises(RuntimeError, match=r"lists \['b'\], which popdistill.errors does not register"):
        reg.names()
