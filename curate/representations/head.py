"""The network's classification head as label evidence.

A bundled network (or any curate fine-tuning run) has a classification head next to its
embedding: per image, probabilities over the classes it was trained on. For images the
network never trained on they are out-of-sample class probabilities, a judge that did not
see this dataset's labels. The head can be used when its classes cover the dataset's
classes by name (:func:`map_classes`: exact names after lower-casing, or the usual
synonyms of :data:`SYNONYMS`, e.g. FERPlus's ``happiness`` for ``happy``); head classes the
dataset lacks are dropped and the rest renormalised. A head that covers only some of the
classes is not used, with a note.

Whether to use it is decided on the dataset's own labels (:func:`decide`): the head's
balanced accuracy against the labels next to the chosen representation's cross-validated
probe. The head is used when it reaches at least :data:`HEAD_MIN_SHARE` of the probe's
balanced accuracy. Agreement with the labels is a floor, not a ranking: a head trained on
re-annotated votes disagrees with a noisy label exactly where the label is wrong, so on
FER2013 PublicTest ``ferplus_resnet10t``'s head agrees with the original labels less than a
probe fitted to them (balanced accuracy 0.56 against 0.64) and yet ranks the real label
noise far better (docs/label.md). What the floor rules out is a head that does not know
these classes (a different task under the same names, or a different kind of picture).

When used, the label screen adds the head's log-probabilities to the representation's
evidence (a product of the two judges) and ``suggested_confidence`` is the product of the
probe's and the head's probabilities, temperature-calibrated on the labels
(:func:`combined_confidence`).

A head trained on the dataset's own images is no independent judge: it has seen their
labels. A network folder may list a 1/16 sample of its training images
(:data:`TRAINING_SAMPLE_FILE`: the first 16 hex digits of the SHA-256 of every training
image whose SHA-256 starts with ``0``); :func:`training_overlap` estimates from it which
share of the dataset the network trained on, and the screen warns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# at least this share of the probe's balanced accuracy, for the head to be used (auto)
HEAD_MIN_SHARE = 0.6
HEAD_SETTINGS = ("auto", "on", "off")
TRAINING_SAMPLE_FILE = "training_images.txt"
SAMPLE_PREFIX = "0"  # the training sample: images whose SHA-256 starts with this (1/16)
OVERLAP_WARN = 0.05  # warn when at least this share of the dataset was training data
# other names of the same expression (canonical name first); both sides are compared canonically
SYNONYMS: dict[str, tuple[str, ...]] = {
    "angry": ("anger", "angry", "mad"),
    "disgust": ("disgust", "disgusted", "disgusting"),
    "fear": ("fear", "fearful", "afraid", "scared"),
    "happy": ("happy", "happiness", "joy", "smile", "smiling"),
    "neutral": ("neutral", "calm"),
    "sad": ("sad", "sadness"),
    "surprise": ("surprise", "surprised"),
    "contempt": ("contempt", "contemptuous"),
}
_CANONICAL = {alias: name for name, aliases in SYNONYMS.items() for alias in (name, *aliases)}


@dataclass
class HeadOutput:
    """The head's probabilities (``N x K`` over ``classes``, the network's own order) of
    every image, the network that made them, and its training sample (or None)."""

    network: str
    classes: tuple[str, ...]
    probabilities: np.ndarray
    training_sample: frozenset[str] | None = None


@dataclass
class HeadMapping:
    """Dataset class -> head class, and what did not map."""

    mapping: dict[str, str]
    missing: list[str]  # dataset classes no head class names
    unused: list[str]  # head classes the dataset lacks (dropped, the rest renormalised)

    @property
    def covered(self) -> bool:
        return not self.missing

    def renamed(self) -> dict[str, str]:
        return {d: h for d, h in self.mapping.items() if d != h}


@dataclass
class HeadEvidence:
    """The decision about the head, and when used its probabilities over the dataset's
    classes (sorted, as the label screen's) for the label screen."""

    setting: str
    used: bool
    why: str
    network: str | None = None
    mapping: HeadMapping | None = None
    balanced_accuracy: float | None = None
    probe_balanced_accuracy: float | None = None
    probabilities: np.ndarray | None = None
    overlap: float | None = None
    temperature: float | None = None
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """JSON-ready, for ``run.json``'s ``label_evidence``."""
        m = self.mapping
        return {
            "setting": self.setting,
            "head_used": self.used,
            "why": self.why,
            "network": self.network,
            "measure": "balanced accuracy against the labels",
            "head_balanced_accuracy": _round(self.balanced_accuracy),
            "probe_balanced_accuracy": _round(self.probe_balanced_accuracy),
            "min_share": HEAD_MIN_SHARE,
            "class_mapping": m.mapping if m else None,
            "classes_missing": m.missing if m else None,
            "head_classes_dropped": m.unused if m else None,
            "temperature": _round(self.temperature),
            "training_overlap": _round(self.overlap),
            "summary": self.sentence(),
        }

    def sentence(self) -> str:
        if self.used:
            return f"network head {self.balanced_accuracy:.2f} (probe {self.probe_balanced_accuracy:.2f}): {self.why}"
        return f"network head not used: {self.why}"


def canonical(name: str) -> str:
    """The canonical expression name of ``name`` (lower-cased, stripped), or itself."""
    key = str(name).strip().lower()
    return _CANONICAL.get(key, key)


def map_classes(
    head_classes: tuple[str, ...] | list[str], dataset_classes: tuple[str, ...] | list[str]
) -> HeadMapping:
    """Which head class stands for each dataset class (see module doc)."""
    by_canon: dict[str, str] = {}
    for h in head_classes:
        by_canon.setdefault(canonical(h), str(h))
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for d in dataset_classes:
        found = by_canon.get(canonical(d))
        if found is None or found in mapping.values():
            missing.append(str(d))
        else:
            mapping[str(d)] = found
    unused = [str(h) for h in head_classes if str(h) not in mapping.values()]
    return HeadMapping(mapping, missing, unused)


def restrict(
    head: HeadOutput, mapping: HeadMapping, dataset_classes: tuple[str, ...]
) -> np.ndarray:
    """The head's probabilities over ``dataset_classes`` (in that order), renormalised."""
    col = {c: i for i, c in enumerate(head.classes)}
    p = np.asarray(head.probabilities, dtype=np.float64)[
        :, [col[mapping.mapping[c]] for c in dataset_classes]
    ]
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])


def decide(
    head: HeadOutput | None,
    labels: np.ndarray,
    dataset_classes: tuple[str, ...],
    probe_balanced_accuracy: float | None,
    setting: str = "auto",
    sha256: np.ndarray | None = None,
) -> HeadEvidence:
    """Whether the label screen uses the head (``setting``: ``auto``, ``on`` or ``off``)."""
    if setting == "off":
        return HeadEvidence(setting, False, "--label-head off")
    if head is None:
        return HeadEvidence(
            setting,
            False,
            "the network has no classification head here (embeddings from a file, "
            "a timm backbone, or the backbone not run)",
        )
    mapping = map_classes(head.classes, dataset_classes)
    if not mapping.covered:
        return HeadEvidence(
            setting,
            False,
            f"its classes ({', '.join(head.classes)}) do not name {', '.join(mapping.missing)}",
            head.network,
            mapping,
        )
    from curate.representations.probe import balanced_accuracy, fit_temperature, with_temperature

    probs = restrict(head, mapping, dataset_classes)
    codes = np.searchsorted(np.asarray(dataset_classes), np.asarray(labels).astype(str))
    bal = balanced_accuracy(probs, codes)
    temperature = fit_temperature(probs, codes)
    probs = with_temperature(probs, temperature)
    overlap = training_overlap(head.training_sample, sha256) if sha256 is not None else None
    ev = HeadEvidence(
        setting,
        False,
        "",
        head.network,
        mapping,
        bal,
        probe_balanced_accuracy,
        probs,
        overlap,
        temperature,
    )
    if overlap is not None and overlap >= OVERLAP_WARN:
        ev.notes.append(
            f"about {overlap:.0%} of these images are {head.network}'s training images: on them its "
            "head has seen the (re-annotated) labels and is no independent judge of them"
        )
    if setting == "on":
        ev.used, ev.why = True, "used with the representation (--label-head on)"
    elif probe_balanced_accuracy is None or bal >= HEAD_MIN_SHARE * probe_balanced_accuracy:
        ev.used, ev.why = True, "used with the representation"
    else:
        ev.why = (
            f"it agrees with the labels on balanced accuracy {bal:.2f}, under {HEAD_MIN_SHARE:g} x the "
            f"probe's {probe_balanced_accuracy:.2f}"
        )
    if mapping.renamed():
        ev.notes.append(
            "network head classes mapped by name: "
            + ", ".join(f"{d} = {h}" for d, h in mapping.renamed().items())
        )
    return ev


def combined_confidence(
    probe_probs: np.ndarray, head_probs: np.ndarray, codes: np.ndarray
) -> np.ndarray:
    """``probe x head``, renormalised and temperature-calibrated on the labels ``codes``."""
    from curate.representations.probe import fit_temperature, with_temperature

    logp = np.log(np.clip(probe_probs, 1e-12, None)) + np.log(np.clip(head_probs, 1e-12, None))
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    p /= p.sum(axis=1, keepdims=True)
    return with_temperature(p, fit_temperature(p, codes))


def read_training_sample(run_dir: str | Path) -> frozenset[str] | None:
    """The training sample a network folder lists (:data:`TRAINING_SAMPLE_FILE`), or None."""
    path = Path(run_dir) / TRAINING_SAMPLE_FILE
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(s.strip().lower() for s in lines if s.strip() and not s.startswith("#"))


def training_overlap(sample: frozenset[str] | None, sha256: np.ndarray) -> float | None:
    """Estimated share of the images (``sha256`` hex digests) that the network trained on:
    among the images whose digest starts with :data:`SAMPLE_PREFIX`, the share listed in
    the network's training sample (None without a sample or such images)."""
    if sample is None:
        return None
    digests = [str(s).lower() for s in sha256 if isinstance(s, str)]
    mine = [d[:16] for d in digests if d.startswith(SAMPLE_PREFIX)]
    if not mine:
        return None
    return float(np.mean([d in sample for d in mine]))


def write_training_sample(sha256: list[str], path: str | Path, what: str) -> int:
    """Write the training sample of a network (the digests starting with
    :data:`SAMPLE_PREFIX`, first 16 hex digits) to ``path``; returns how many."""
    from curate.io import atomic_path

    picked = sorted({s.lower()[:16] for s in sha256 if s.lower().startswith(SAMPLE_PREFIX)})
    with atomic_path(path) as tmp:
        Path(tmp).write_text(
            f"# {what}: SHA-256 (first 16 hex digits) of the {len(picked):,} training images whose "
            f"SHA-256 starts with {SAMPLE_PREFIX!r}, of {len(set(sha256)):,}\n"
            + "".join(f"{s}\n" for s in picked),
            encoding="utf-8",
        )
    return len(picked)


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)
