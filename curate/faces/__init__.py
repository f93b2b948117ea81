"""Face analysis: head pose and occlusion per image, offline, cached by image hash.

One row per image: ``face_found``, ``yaw``/``pitch``/``roll`` (degrees), ``occlusion``
(0..1, occluded for expression recognition: clear glasses alone do not count),
``occlusion_any`` (0..1, anything over the face), ``face_confidence`` and a ``detail``
text explaining a missing face or an unreadable file. The screen in :mod:`curate.screens.faces` turns
these numbers into verdicts.

Method (details, conventions and measured numbers in ``docs/faces.md``), one module
per job:

* :mod:`~curate.faces.model_file` finds MediaPipe's ``face_landmarker.task`` (offline
  first) for :func:`resolve_face_model`.
* Images are decoded by :mod:`curate.images`, so the face screen sees the embedder's
  pixels. The face (478 landmarks and a facial transformation matrix) is found by
  MediaPipe's face landmarker: :mod:`~curate.faces.litert` runs its two networks with
  LiteRT (the default backend), :mod:`~curate.faces.landmarks` through MediaPipe's Tasks
  API (the reference; the two agree to about 0.001 degrees); tight crops
  (such as 48x48 FER faces) are padded with their median grey and upscaled first
  (:mod:`~curate.faces.geometry`), because the landmarker misses faces that touch the
  image border. ``face_confidence`` is the score of the BlazeFace detector that ships
  inside the same ``.task`` file.
* Yaw, pitch and roll come from the rotation part of the transformation matrix
  (:func:`~curate.faces.geometry.pose_from_matrix`). Yaw is positive when the face
  turns to its own left (the nose points to the image's right), pitch is positive when
  the face looks up, roll is positive when the head tilts towards its own left
  shoulder (clockwise in the image).
* The face is aligned to a 48x48 template with five landmarks, and small convolutional
  networks (:mod:`~curate.faces.occlusion`; weights in ``curate/models/faces/``, made by
  the recipe in :mod:`~curate.faces.fit_occlusion`) say whether something covers it and
  whether that is only a pair of clear glasses.
* :func:`analyze_faces` (:mod:`~curate.faces.analyze`) finds faces in worker processes
  (:func:`~curate.faces.landmarks.find_faces`), scores occlusion a batch at a time and
  keeps a cache; :func:`faces_for_source` (:mod:`~curate.faces.run`) is ``curate faces``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["analyze_faces", "faces_for_source", "resolve_face_model"]


def __getattr__(name: str) -> Any:
    """The public functions, imported on first use: the worker processes that find faces
    import ``curate.faces.landmarks`` and need neither pandas nor the rest."""
    if name == "analyze_faces":
        from curate.faces.analyze import analyze_faces

        return analyze_faces
    if name == "resolve_face_model":
        from curate.faces.model_file import resolve_face_model

        return resolve_face_model
    if name == "faces_for_source":
        from curate.faces.run import faces_for_source

        return faces_for_source
    raise AttributeError(f"module 'curate.faces' has no attribute {name!r}")
