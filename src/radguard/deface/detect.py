"""Offline face detection, landmarks and embeddings on renders.

Every model ships inside a registry package and is read from the package's own folder; none
is downloaded: OpenCV's Haar cascades (opencv-python-headless 4.x, ``cv2.data``), dlib's HOG
frontal detector (dlib-bin, built into the library), and face-recognition-models' 68-point
shape predictor and 128-d ResNet embedding (dlib's own same-person threshold: distance 0.6).
Models load once per process.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.errors import RadguardError

SAME_PERSON_DISTANCE = 0.6  # dlib_face_recognition_resnet_model_v1's documented threshold


class DetectorUnavailable(RadguardError):
    """A face model is missing: defacing cannot prove anything without it."""


@dataclass(frozen=True)
class Face:
    """A face found in a render: box (left, top, width, height) in pixels."""

    box: tuple[int, int, int, int]
    detector: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "detector": self.detector, "score": round(self.score, 3)}


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")  # not imported: it needs
    if spec is None or not spec.submodule_search_locations:  # pkg_resources at import
        raise DetectorUnavailable(
            "face-recognition-models is not installed (pip install 'radguard[deface]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@lru_cache(maxsize=1)
def _models() -> dict[str, Any]:
    try:
        import cv2
        import dlib
    except ImportError as error:
        raise DetectorUnavailable(
            f"{error.name} is missing: pip install 'radguard[deface]' "
            "(opencv-python-headless 4.x, dlib-bin, face-recognition-models)"
        ) from error
    cascades = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "")
    found: dict[str, Any] = {"hog": dlib.get_frontal_face_detector()}
    for name, file in (
        ("haar", "haarcascade_frontalface_default.xml"),
        ("haar-alt2", "haarcascade_frontalface_alt2.xml"),
        ("haar-profile", "haarcascade_profileface.xml"),
    ):
        classifier = cv2.CascadeClassifier(str(cascades / file))
        if classifier.empty():
            raise DetectorUnavailable(
                f"OpenCV cascade {file} not found: opencv-python-headless 4.x ships it "
                "(5.x does not)"
            )
        found[name] = classifier
    models = _models_dir()
    for _name, file in (
        ("shape", "shape_predictor_68_face_landmarks.dat"),
        ("embed", "dlib_face_recognition_resnet_model_v1.dat"),
    ):
        if not (models / file).is_file():
            raise DetectorUnavailable(f"face-recognition-models lacks {file}")
    found["shape"] = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
    found["embed"] = dlib.face_recognition_model_v1(
        str(models / "dlib_face_recognition_resnet_model_v1.dat")
    )
    return found


def check_models() -> None:
    """Raise :class:`DetectorUnavailable` unless every model loads (offline)."""
    _models()


def find_faces(image: NDArray[np.uint8], sensitive: bool = False) -> list[Face]:
    """Frontal faces in a grey render. ``sensitive`` lowers every detector's threshold: used
    on renders after defacing, where a miss would be a leak."""
    models = _models()
    faces: list[Face] = []
    rects, scores, _ = models["hog"].run(image, 1, -0.3 if sensitive else 0.0)
    for rect, score in zip(rects, scores, strict=True):
        faces.append(
            Face((rect.left(), rect.top(), rect.width(), rect.height()), "dlib-hog", float(score))
        )
    size = max(24, min(image.shape) // 6)
    for name in ("haar", "haar-alt2"):
        boxes = models[name].detectMultiScale(
            image, scaleFactor=1.08, minNeighbors=4, minSize=(size, size)
        )
        for x, y, w, h in boxes:
            faces.append(Face((int(x), int(y), int(w), int(h)), name, 0.0))
    return faces


def find_profiles(image: NDArray[np.uint8], sensitive: bool = False) -> list[Face]:
    """Faces in profile (the cascade knows one side; the mirrored image gives the other)."""
    models = _models()
    size = max(24, min(image.shape) // 6)
    faces = []
    width = image.shape[1]
    for mirrored in (False, True):
        source = np.ascontiguousarray(image[:, ::-1]) if mirrored else image
        boxes = models["haar-profile"].detectMultiScale(
            source, scaleFactor=1.08, minNeighbors=4, minSize=(size, size)
        )
        for x, y, w, h in boxes:
            left = width - int(x) - int(w) if mirrored else int(x)
            faces.append(Face((left, int(y), int(w), int(h)), "haar-profile", 0.0))
    return faces


def _rect(box: tuple[int, int, int, int]) -> Any:
    import dlib

    left, top, width, height = box
    return dlib.rectangle(int(left), int(top), int(left + width), int(top + height))


def landmarks(image: NDArray[np.uint8], box: tuple[int, int, int, int]) -> NDArray[np.float64]:
    """dlib's 68 landmarks (x, y) inside ``box``."""
    shape = _models()["shape"](image, _rect(box))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


def embedding(image: NDArray[np.uint8], box: tuple[int, int, int, int]) -> NDArray[np.float64]:
    """The 128-d face descriptor of the face in ``box`` (aligned by its own landmarks)."""
    models = _models()
    rgb = np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    shape = models["shape"](rgb, _rect(box))
    return np.asarray(models["embed"].compute_face_descriptor(rgb, shape), np.float64)


def best(faces: list[Face]) -> Face | None:
    """The most trustworthy detection: dlib's HOG by score, else the largest Haar box."""
    hog = [f for f in faces if f.detector == "dlib-hog"]
    if hog:
        return max(hog, key=lambda f: f.score)
    if faces:
        return max(faces, key=lambda f: f.box[2] * f.box[3])
    return None
