"""Image targets at real scale: CIFAR-10/100, ImageFolder trees, Hugging Face image datasets.

The fast data path: every image is decoded **once** into a uint8 tensor (CIFAR: 150 MB for
50,000 images). At run time the split moves to the training device when it fits
(``resident: auto``) and each batch is augmented there — random crop with zero padding and a
horizontal flip, drawn from the run's seeded generator — then converted to float, resized to
the source's resolution and normalised with the source's mean/std. Datasets whose decoded
size exceeds ``max_decoded_gb`` are read through a ``DataLoader`` with workers instead
(:class:`LoaderSplit`), which decodes per batch and hands uint8 batches to the same on-device
pipeline, so both paths produce the same pixels.

Augmentation applies to training passes only (``batches(shuffle=True)``); evaluation and
feature extraction (frozen-feature cache) see the un-augmented images.

One module per job: ``pipeline`` (on-device augmentation), ``splits`` (resident and DataLoader
splits), ``decode`` (decode once, the decoded-image cache), ``common`` (params and splits every
file-backed target shares), and one per dataset family: ``cifar`` (``torchvision/``: CIFAR, and
MNIST / USPS read by ``mnist``), ``folder``
(``imagefolder/``), ``hf`` (``hfimages/``), ``digits`` (``sklearn/digits``, ``test/tiny_images``:
small sets held as normalised floats, with their own shifted domain). Any of them also takes
another target as its unlabeled or evaluated domain (:mod:`harness.targets.domains`).
"""

from harness.targets.vision import cifar, digits, folder, hf  # noqa: F401  (registers the namespaces)
from harness.targets.vision.pipeline import Pipeline
from harness.targets.vision.splits import ImageSplit, LoaderSplit

__all__ = ["ImageSplit", "LoaderSplit", "Pipeline"]
