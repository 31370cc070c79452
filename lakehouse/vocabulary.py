"""The classifier's label space: what a photo's content and style can be.

Labels, features, the studio and the demo world all speak these names; they
live here, apart from any of them, so the model code imports nothing heavier
than torch.
"""

CONTENT_CLASSES = ("circle", "square", "triangle", "stripes")
STYLES = ("gray", "high_contrast", "blurred")
