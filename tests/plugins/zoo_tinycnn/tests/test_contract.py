# zoo-tinycnn/tests/test_contract.py
"""The family against zoo's contract, on a tiny random-weight backbone written to disk: no network needed."""

import json

from zoo_tinycnn.family import TinyCnnFamily

from zoo.registry import BackboneSpec
from zoo.testing import check_family


def test_tinycnn_keeps_the_family_contract(tmp_path):
    from safetensors.torch import save_model
    from zoo_tinycnn.model import TinyCnn

    config = {"family": "tinycnn", "widths": [8, 16, 32], "image_size": 32, "num_classes": 10}
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_model(TinyCnn(config["widths"]), str(tmp_path / "model.safetensors"))
    spec = BackboneSpec.from_toml({
        "name": "tinycnn-test", "family": "tinycnn", "source": f"local-dir:{tmp_path}", "tasks": ["image-cls"],
        "params_m": 0.006474, "gflops": 0.000406, "input": {"image_size": 32}, "license": "mit",
    })
    check_family(TinyCnnFamily(), spec)   # raises with a report naming every check that failed
