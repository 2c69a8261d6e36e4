"""Two trainings with the same seed and `--deterministic` on the CPU give identical files."""

import json

import pytest

from cnnvit import config
from cnnvit.engine.train import fit

TIMINGS = {"eval_images_per_s"}  # the only keys that may differ: they are measurements


@pytest.mark.parametrize("model, kwargs", [
    ("resnet18-small", {}),
    ("vit-small-input", {"width": 32, "depth": 1, "heads": 2}),
])
def test_same_seed_deterministic_gives_identical_metric_files(tmp_path, one_thread, model,
                                                              kwargs):
    outs = []
    for name in ("a", "b"):
        cfg = config.load(None, {"dataset": "digits", "model": model, "model_kwargs": kwargs,
                                 "epochs": 2, "batch_size": 64, "deterministic": True,
                                 "threads": 1, "seed": 7, "out": str(tmp_path / name)})
        outs.append(fit(cfg, quiet=True))
    a, b = outs
    for split in ("val", "test"):
        ma, mb = (json.loads((d / f"metrics_{split}.json").read_text()) for d in (a, b))
        assert {k: v for k, v in ma.items() if k not in TIMINGS} == \
               {k: v for k, v in mb.items() if k not in TIMINGS}
        assert (a / f"predictions_{split}.csv").read_bytes() == \
               (b / f"predictions_{split}.csv").read_bytes()
