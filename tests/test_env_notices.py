"""Building environments prints no known-harmless upstream notice, and nothing else is hidden."""

import subprocess
import sys

NOTICE = "settotalmass"

# dm_control, once imported, sends every MuJoCo warning to the ``absl`` logger; HalfCheetah's XML
# then printed ``WARNING:absl:compiler attribute 'settotalmass' is deprecated ...`` per build.
SCRIPT = """
import logging
logging.basicConfig()
from ratingrl.feedback.envs import dm_control_physics, make_env
dm_control_physics(make_env("dmc/cartpole-balance"))  # imports dm_control
for _ in range(3):
    make_env("HalfCheetah-v5").close()
logging.getLogger("absl").warning("another absl warning")
print(type(logging.getLogger("absl")).__name__)
"""


def test_halfcheetah_after_dm_control_logs_no_settotalmass_notice_but_other_warnings() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert NOTICE not in done.stderr
    assert "WARNING:absl:another absl warning" in done.stderr  # only that one notice is dropped
    assert done.stdout.strip() == "ABSLLogger"  # absl still owns its logger


def test_known_notice_is_dropped_from_the_python_warning_route_too() -> None:
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "from ratingrl.feedback.envs import make_env\n"
        "make_env('HalfCheetah-v5').close()\n"
        "print('built')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "built" and NOTICE not in done.stderr
