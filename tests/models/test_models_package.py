import subprocess
import sys

import recembed.models as models


def test_public_names_are_exported():
    for name in models.__all__:
        assert getattr(models, name) is not None, name
    assert {"DotProduct", "TwoTower", "DLRM", "DCNv2", "DeepFM", "MLP", "dense_parameters"} <= set(models.__all__)


def test_models_do_not_import_higher_layers():
    code = (
        "import sys, recembed.models; "
        "bad = sorted(m for m in sys.modules if m.startswith(('recembed.data', 'recembed.train'))); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
