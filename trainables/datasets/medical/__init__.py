"""Medical data sets from the user's disk, in their published layouts, prepared once into 2D slices.

    python -m trainables.datasets prepare --config conf/example_medical_tiny.yaml

Nothing is downloaded: a study names the folder where a data set already lies
(``datasets.<name>.path``) and :func:`~trainables.datasets.registry.medical_cases` lists it, in the
layout :data:`~trainables.datasets.registry.MEDICAL_LAYOUTS` names, before the study runs
(:func:`trainables.datasets.registry.check_data`).

- busi: ``benign/``, ``malignant/`` with ``X.png`` + ``X_mask.png`` (+ ``X_mask_1.png``, unioned);
  ``normal/`` is excluded. One 2D image per image.
- spleen, heart (Medical Segmentation Decathlon): ``dataset.json`` whose "training" list names
  the NIfTI pairs in ``imagesTr/`` and ``labelsTr/``. 2D slices along ``slice_axis``.
- glas, two layouts (``datasets.glas.layout``; by default the one the folder holds):
  ``official``: ``X.bmp`` + ``X_anno.bmp`` (PNG too) in one folder; ``Grade.csv`` with patient ids,
  optional. ``train_test_folders`` (as UCTransNet / UDTransNet redistribute it):
  ``Train_Folder/`` and ``Test_Folder/``, each ``img/N.png`` + ``labelcol/N.png``; no patient ids.
  One 2D image per image.

Files whose names start with a dot (the ``._*`` files of the MSD archives) are ignored.

Orientation, disk -> array, the same for training and testing, image and mask alike:

- PNG / BMP: (rows, columns) as a viewer shows the picture, top row first, never
  transposed (MONAI's ``PILReader`` transposes; the reference pipeline trained on that).
- NIfTI: reoriented to the closest canonical RAS+ (``nibabel.as_closest_canonical``);
  a slice keeps the other two axes (u, v) in RAS order and is shown as
  ``plane.T[::-1, ::-1]``: rows run from +v down, columns from +u leftwards. Axial:
  anterior up, the patient's right on the image's left (radiological view); sagittal:
  superior up, anterior left; coronal: superior up, the patient's right on the left.

Intensity, to [0, 1]: CT is clipped to ``window`` (spleen default [-150, 250] HU, the
abdominal soft-tissue window) and scaled; MRI (per volume), ultrasound and histology (per
image, in grayscale) map the ``percentiles`` (default 0.5, 99.5) to 0 and 1, clipped.
Masks: label > 0 is foreground (BUSI's extra masks unioned, GlaS glands merged; a GlaS
``labelcol`` mask with no foreground at all is refused, naming it).
Both are resized to ``image_size`` squared (aspect not kept): images linearly with
anti-aliasing, masks by nearest neighbour. A 2D image is kept when its mask has
foreground at that size; a volume or image with none is warned about and skipped.

Patients: an MSD volume is a patient; a BUSI image is one (no ids are published); a GlaS
image belongs to the patient ``Grade.csv`` names, else to itself (always in the folder layout).
Splits are drawn over patients (``prepare.patient_split``); the GlaS folders give train and test,
and validation is drawn from train (``prepare.given_split``). Both are seeded by the data seed
and stored, with every slice id, in the cache and in each run's ``split_manifest.json``.

Cache: ``<cache>/<name>-<key>/`` (:mod:`trainables.datasets.cache`: built once, atomically, under a
file lock), keyed by the data set's settings (not its path), the relative names, sizes and
modification times of the files read, ``image_size``, ``data_seed`` and ``CACHE_VERSION``.

Modules: ``layouts`` (which files make a data set, checked without reading them), ``read``
(files -> 2D slices in [0, 1] with their masks), ``prepare`` (splits, cache, the arrays of a trial).
"""
