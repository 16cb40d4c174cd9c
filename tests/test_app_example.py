"""examples/rating_app.py runs and hands every rating back through AppRatingSource."""

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rating_app.py"


def test_rating_app_example(tmp_path):
    spec = importlib.util.spec_from_file_location("rating_app", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ratings = module.main(n_segments=3, workdir=str(tmp_path))
    assert ratings.tolist() == [2, 2, 2]
