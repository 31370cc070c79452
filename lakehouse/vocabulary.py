"""The classifier's label space and input: what a photo's content and style can be.

Labels, features, the studio and the demo world all speak these names; they
live here, apart from any of them, so the model code imports nothing heavier
than torch.
"""

CONTENT_CLASSES = ("circle", "square", "triangle", "stripes")
STYLES = ("gray", "high_contrast", "blurred")
# square uint8 views: the augmentation recipe makes them, the classifier takes them
INPUT_SIZE = 96
