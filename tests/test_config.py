"""The one configuration source: typed sections, flags generated from them, defaults that agree."""
import dataclasses
import inspect

import pytest
from absl import flags

from pam_tf.config import (ALL_SECTIONS, SECTIONS, ExportConfig, PruneSettings, RunConfig,
                           define_flags, flag_names)


def test_every_setting_becomes_a_flag_with_its_default_and_help():
    fv = flags.FlagValues()
    define_flags(fv, choices={"method": ("pam", "none", "shared")})
    for cls in ALL_SECTIONS:
        for f in dataclasses.fields(cls):
            if not f.metadata:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            flag = fv[f.name]
            assert flag.help.endswith(f.metadata["help"])  # enums prefix their choices
            assert (list(default) if isinstance(default, tuple) else default) == flag.default
    assert set(flag_names()) == {name for name in fv}


def test_flag_names_are_unique_across_sections():
    names = flag_names()
    assert len(names) == len(set(names))


def test_flat_settings_round_trip_through_the_sections():
    config = RunConfig.from_flat(("a.keras", "b.keras"), "fashion2", budget=0.5, layout="split",
                                 bench_threads=2, mode="subsets", seed=3)
    assert config.prune.budget == 0.5 and config.export.layout == "split"
    assert config.bench.bench_threads == 2 and config.merge.mode == "subsets"
    again = RunConfig.from_flat(config.models, config.suite,
                                **{k: v for k, v in config.flat().items()
                                   if k not in ("models", "suite")})
    assert again == config


def test_baselines_are_a_list_or_one_comma_separated_string():
    config = RunConfig.from_flat(("a.keras",), "fashion2", baselines="none,mtz")
    assert config.baselines == ("none", "mtz") == RunConfig(("a.keras",), "fashion2").baselines
    assert RunConfig.from_flat(("a.keras",), "fashion2", baselines=["none"]).baselines == ("none",)
    assert config.flat()["baselines"] == ["none", "mtz"]


def test_unknown_setting_is_named():
    with pytest.raises(TypeError, match="unknown setting\\(s\\): val_sample"):
        RunConfig.from_flat(("a.keras",), "fashion2", val_sample=10)


@pytest.mark.parametrize("kwargs, message", [
    (dict(budget=-1.0), r"--budget=-1.0 is below its lower bound 0.0"),
    (dict(layout="diagonal"), r"--layout='diagonal' is not one of split, fused"),
    (dict(target_flops=1.5), r"--target_flops=1.5 is above its upper bound 1.0"),
    (dict(seed=-2), r"--seed=-2 is below its lower bound 0"),
])
def test_out_of_bounds_values_are_refused_naming_the_flag(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_flat(("a.keras",), "fashion2", **kwargs)


def test_export_all_defaults_agree_with_the_export_section():
    from pam_tf.export import export_all

    params = inspect.signature(export_all).parameters
    assert params["layout"].default == ExportConfig().layout
    assert params["quantize"].default == ExportConfig().quantize


def test_resolved_fine_tuning_lengths_follow_the_method():
    s = PruneSettings(finetune_steps=10, finetune_scale="network")
    assert s.resolved(merged=True).initial_finetune_steps == 40
    assert s.resolved(merged=False).initial_finetune_steps == 0
    assert s.resolved(merged=False).final_finetune_steps == 20
    explicit = PruneSettings(finetune_steps=10, initial_finetune_steps=5, final_finetune_steps=0,
                             finetune_scale="network")
    assert explicit.resolved(merged=True) == explicit


def test_by_default_a_merged_net_gets_the_fine_tuning_of_all_its_tasks():
    """Issue 14: B1 fine-tunes each of n nets for the lengths given, so the merged nets do too,
    per task they serve; a single-task net (n = 1) is unchanged."""
    s = PruneSettings(finetune_steps=10)
    assert s.finetune_scale == "task"
    assert s.resolved(merged=True, n_tasks=2).finetune_steps == 20
    assert s.resolved(merged=False, n_tasks=1).finetune_steps == 10


def test_sections_hash_their_values():
    assert SECTIONS["export"]().key() == ExportConfig().key()
    assert ExportConfig(layout="split").key() != ExportConfig().key()


def test_finetune_scale_task_gives_a_merged_net_the_effort_of_its_tasks():
    s = PruneSettings(finetune_steps=10, finetune_scale="task")
    merged = s.resolved(merged=True, n_tasks=3)
    assert (merged.finetune_steps, merged.initial_finetune_steps,
            merged.final_finetune_steps) == (30, 120, 60)
    assert merged.resolved(merged=True, n_tasks=3) == merged  # per network: resolves to itself
    single = s.resolved(merged=False, n_tasks=1)
    assert (single.finetune_steps, single.initial_finetune_steps) == (10, 0)


def test_a_setting_at_its_absent_as_value_leaves_the_keys_of_older_run_folders_unchanged():
    """lr_decay, step_recovery, retry_fill and retry_tabu came after run folders existed: at
    'none' / 0 / False (what the code did before) neither the prune section's key nor the run
    identity mentions them, so an older folder still resumes."""
    import hashlib
    import json

    from pam_tf.config import PruneSettings, RunConfig
    from pam_tf.runfolder import identity

    later = {"lr_decay": "cosine", "step_recovery": 2, "retry_fill": True, "retry_tabu": 3}
    s = PruneSettings()
    before = {k: v for k, v in s.to_json().items() if k not in later}
    assert s.key_json() == before and set(later) <= set(s.to_json())
    assert s.key() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    for name, value in later.items():
        assert PruneSettings(**{name: value}).key() != s.key()
        assert name not in identity(RunConfig.from_flat(["m.keras"], "fashion2"))
        assert identity(RunConfig.from_flat(["m.keras"], "fashion2",
                                            **{name: value}))[name] == value
