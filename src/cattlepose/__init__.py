"""cattlepose: PSA-augmented HRNet keypoint estimation for cattle and other animals."""

import os

# No network at run time, ever. albumentations asks the package index for its latest version when it is imported
# (a DNS lookup and an HTTP request: a stall behind a farm firewall, a warning on an offline machine) unless this
# is set. It is set here, before anything imports albumentations, and loader workers inherit it (forked or spawned:
# a spawned worker imports this package again). Set unconditionally: the promise is not the user's to undo.
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

__version__ = "0.1.0"
