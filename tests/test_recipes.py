"""The spec language, recipe configs and pipelines (no framework needed)."""

import dataclasses

import pytest

import workbench as wb
from workbench.errors import IncompatibleRecipesError, ParameterError, SpecError, UnknownNameError
from workbench.recipes import Int8Dynamic, Pipeline, Prune


@pytest.mark.parametrize("spec, canonical", [
    ("prune(0.5)", "prune(0.5)"),
    ("prune(sparsity=0.5)", "prune(0.5)"),
    ("  prune( 0.5 )+int8-dynamic ", "prune(0.5) + int8-dynamic"),
    ("int8-dynamic(engine=x86, per_channel=true)", "int8-dynamic(engine=x86, per_channel=true)"),
    ("int8-dynamic(engine='qnnpack')", "int8-dynamic(engine=qnnpack)"),
    ("int8-dynamic(engine=auto)", "int8-dynamic"),
    ("fold-bn + int8-dynamic", "fold-bn + int8-dynamic"),
    ("baseline", "baseline"),
    ("BASELINE", "baseline"),
    ("prune", "prune(0.5)"),
])
def test_canonical_spec(spec, canonical):
    assert Pipeline.parse(spec).spec == canonical


@pytest.mark.parametrize("spec", ["prune(0.3) + fold-bn + int8-dynamic(per_channel=true)", "baseline",
                                  "int8-dynamic(engine=qnnpack)", "prune(0.9)"])
def test_spec_and_dict_round_trip(spec):
    p = Pipeline.parse(spec)
    assert Pipeline.parse(p.spec) == p
    assert Pipeline.from_dict(p.to_dict()) == p
    assert hash(Pipeline.parse(spec)) == hash(p)


def test_recipes_are_frozen_and_hashable():
    r = Prune(0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.sparsity = 0.1  # type: ignore[misc]
    assert {Prune(0.5), Prune(sparsity=0.5)} == {Prune(0.5)}
    assert Prune(0.5).to_dict() == {"recipe": "prune", "sparsity": 0.5, "pattern": "unstructured", "finetune": -1,
                                    "schedule": "auto", "exclude": []}


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        Pipeline.parse("int4-magic + prune(0.5)")
    msg = str(info.value)
    assert "'int4-magic'" in msg and "int8-dynamic" in msg and "prune" in msg and "fold-bn" in msg


@pytest.mark.parametrize("spec, fragment", [
    ("prune(1.5)", "[0.0, 1.0)"),
    ("prune(-0.1)", "[0.0, 1.0)"),
    ("prune(nan)", "a number"),
    ("prune(half)", "a number"),
    ("prune(true)", "a number"),
    ("int8-dynamic(engine=tpu)", "one of auto, x86, fbgemm, qnnpack, onednn"),
    ("int8-dynamic(per_channel=2)", "true, false or auto"),
    ("prune(0.5, unstructured, 3, auto, x, 4)", "at most 5 positional"),
    ("prune(0.5, 0.6)", "pattern=0.6 is invalid; expected a word"),
    ("prune(amount=0.5)", "one of the parameters of prune: sparsity"),
    ("fold-bn(1)", "at most 0 positional"),
])
def test_bad_parameters_say_what_is_valid(spec, fragment):
    with pytest.raises(ParameterError) as info:
        Pipeline.parse(spec)
    assert fragment in str(info.value)


@pytest.mark.parametrize("spec, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("prune(0.5", "unclosed"),
    ("prune(0.5))", "unmatched"),
    ("prune(0.5) + ", "'+' with no recipe"),
    ("+ prune(0.5)", "'+' with no recipe"),
    ("prune(sparsity=0.5, sparsity=0.6)", "given twice"),
    ("prune(sparsity=0.5, 0.6)", "after a keyword"),
    ("prune 0.5", "not a recipe call"),
    ("prune(0.5,)", "empty parameter"),
])
def test_syntax_errors(spec, fragment):
    with pytest.raises(SpecError) as info:
        Pipeline.parse(spec)
    assert fragment in str(info.value)


@pytest.mark.parametrize("spec, fragment", [
    ("int8-dynamic + prune(0.5)", "must come before int8-dynamic"),
    ("int8-dynamic + int8-dynamic(per_channel=true)", "already sets the precision"),
])
def test_incompatible_combinations_are_refused_before_running(spec, fragment):
    with pytest.raises(IncompatibleRecipesError) as info:
        Pipeline.parse(spec)
    assert fragment in str(info.value)


def test_parse_pipelines_accepts_strings_lists_and_objects():
    got = wb.parse_pipelines("int8-dynamic; prune(0.5) ; fold-bn + int8-dynamic")
    assert [p.spec for p in got] == ["int8-dynamic", "prune(0.5)", "fold-bn + int8-dynamic"]
    got = wb.parse_pipelines(["prune(0.5)", Int8Dynamic(), Pipeline.parse("fold-bn"), {"steps": []}])
    assert [p.spec for p in got] == ["prune(0.5)", "int8-dynamic", "fold-bn", "baseline"]
    assert (Pipeline.parse("prune(0.5)") + "int8-dynamic").spec == "prune(0.5) + int8-dynamic"
    with pytest.raises(SpecError):
        wb.parse_pipelines(" ; ")
    with pytest.raises(SpecError):
        wb.parse_pipelines([42])


def test_bad_dict_forms():
    with pytest.raises(SpecError):
        Pipeline.from_dict({"steps": [{"sparsity": 0.5}]})
    with pytest.raises(SpecError):
        Pipeline.from_dict({"spec": "prune(0.5)"})
    with pytest.raises(ParameterError):
        Pipeline.from_dict({"steps": [{"recipe": "prune", "sparsity": 2}]})


def test_describe_lists_every_recipe_with_its_parameters():
    rows = {r["name"]: r for r in wb.recipes.describe()}
    assert {"int8-dynamic", "prune", "fold-bn"} <= set(rows)
    assert rows["prune"]["params"] == {"sparsity": 0.5, "pattern": "unstructured", "finetune": -1, "schedule": "auto",
                                       "exclude": ()}
    assert rows["int8-dynamic"]["kind"] == "precision"
