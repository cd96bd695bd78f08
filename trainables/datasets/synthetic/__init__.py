"""The synthetic texture data set.

- ``generate``: masks, texture crops and blending, deterministic from one data seed;
- ``texture_file``: a texture read from an image file;
- ``prepare``: every alpha level cached per machine with the texture similarity of each image,
  and the arrays of one trial;
- ``preview``: example images and TS per alpha level, as a figure.
"""
