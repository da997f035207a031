"""cattlepose: PSA-augmented HRNet keypoint estimation for cattle and other animals."""

import os

# No network at run time, ever. albumentations asks the package index for its latest version when it is imported
# (a DNS lookup and an HTTP request: a stall behind a farm firewall, a warning on an offline machine) unless this
# is set. It is set here, before anything imports albumentations, and loader workers inherit it (forked or spawned:
# a spawned worker imports this package again). Set unconditionally: the promise is not the user's to undo.
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

# torch.compile's kernels are kept where later folds, runs and predicts find them (engine/compiling.py). torch's
# own default, /tmp/torchinductor_<user>, is lost at every reboot; it is written into the environment as soon as
# torch's compiler is imported, so a user's choice can only be told from it here, before that.
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR",
    os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cattlepose", "torch-compile"),
)

__version__ = "0.1.0"
