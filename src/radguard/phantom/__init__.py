"""Synthetic DICOM phantoms with planted identifiers, and their answer key ("Prove it").

``generate(out, patients, seed)`` writes realistic studies under ``out``: per patient two or
three studies a known number of days apart (CT, MR, DX, CR, US, SC, SR, RT Structure Set,
GSPS; exact geometry; anatomical pixel content including heads with faces; RLE, JPEG-LS,
deflate and implicit VR encodings where encoders exist), with identifiers planted everywhere
real ones hide: names, IDs, addresses, phones, institutions, staff, devices, every kind of date
and time, free text, nested request sequences, private blocks (a known vendor's safe ones and
an unknown creator's, including VR UN and a private sequence), an overlay, burned-in pixel
text, and folder and file names. Same seed, same bytes; ``workers=N`` writes studies in a
pool of N processes (same bytes too).

The answer key (JSON, UTF-8; default ``<out>.answer.json`` beside ``out``, never inside it)::

    {
      "schema": "radguard-phantom-answer-key/1",
      "seed": 7,
      "policy": "research",                 # "expect" below is for this built-in policy
      "transfer_syntaxes": {"<uid>": <files written with it>},
      "skipped_transfer_syntaxes": {"<uid>": "<why: missing encoder>"},
      "fonts": ["pil-bitmap", "pil-aileron", "DejaVuSans.ttf", ...],   # fonts found here
      "patients": [{
        "index": 0, "patient_id": "HG...", "patient_name": "FAMILY^GIVEN^MIDDLE",
        "birth_date": "YYYYMMDD", "sex": "F", "folder": "FAMILY_GIVEN_HG...",
        "studies": [{"study_instance_uid": "2.25...", "study_date": "YYYYMMDD",
                     "day": 0, "description": "...", "accession_number": "ACC...",
                     "folder": "<relative path>"}, ...],
        "intervals_days": [days between study 1 and 2, between 2 and 3]
      }],
      "files": [{
        "file": "<path relative to out>", "patient": 0, "study": 0, "modality": "CT",
        "sop_class_uid": ..., "sop_instance_uid": ..., "study_instance_uid": ...,
        "series_instance_uid": ..., "frame_of_reference_uid": "" or ...,
        "transfer_syntax_uid": ..., "number_of_frames": 1,
        "references": [{"path": "(0008,1115)/(0008,1140)", "sop_class_uid": ...,
                        "sop_instance_uid": ..., "series_instance_uid": ...,
                        "study_instance_uid": ...}]          # instances this file refers to
      }],
      "burned_in": [{"file": ..., "frame": 0, "x": 4, "y": 4, "w": 120, "h": 11,
                     "text": "FAMILY^GIVEN", "font": "pil-bitmap", "size": 11,
                     "ink": [255], "source": "(7FE0,0010)" or "(6000,3000)"}],
      "planted": [{"file": ..., "path": "(0010,0010)", "category": "patient_name",
                   "value": "FAMILY^GIVEN^MIDDLE", "expect": "remove"}, ...]
    }

``planted`` entries:

- ``path`` is a tag path from the top of the dataset, ``/`` between levels, through every item
  of each sequence (``(0040,0275)/(0040,0008)/(0040,0440)/(0040,A123)``); private attributes
  use the tag as written and add ``"creator"``; ``filename`` means the file's relative path;
  ``(7FE0,0010)`` / ``(6000,3000)`` mean text burned into pixel or overlay data (its boxes are
  in ``burned_in``: top-left x, y, width, height in pixels, per frame).
- ``value`` is found in the value at ``path`` (case-insensitively): the whole value, or, for
  free text, the identifying part (a surname, a phone number, a written date), or for
  ``research`` entries the clinical words ("CHEST", "W/O CONTRAST"). Binary values (OB, UN)
  are read as Latin-1. :func:`values_at` reads the values at a path.
- ``category``: patient_name, patient_id, date, time, address, phone, institution, staff_name,
  device, accession, free_text, private, uid, burned_in, filename, research.
- ``expect``: ``remove`` (the original value must not be found in the released file: removed,
  replaced, shifted or cleaned), or ``keep`` (research needs it and the research policy keeps
  it: patient characteristics, geometry, acquisition parameters, clinical words, safe private
  attributes of PS3.15 Table E.3.10-1, and times, which whole-day date shifts leave as they
  are). Burned-in text is ``remove``: ``research`` selects Clean Pixel Data, whose
  pixel stage must paint it over (``verify --answer-key`` checks the boxes on released pixels).
- ``burned_in`` boxes are drawn without anti-aliasing: every pixel of
  ``radguard.phantom.burn.text_mask(text, Font(font, size))`` placed at x, y has value ``ink``.
"""

from radguard.phantom.answer import (
    AnswerKey,
    BurnedText,
    Category,
    Expect,
    FileRecord,
    PatientRecord,
    Planted,
    Reference,
    StudyRecord,
    values_at,
)
from radguard.phantom.build import default_key_path, generate

__all__ = [
    "AnswerKey",
    "BurnedText",
    "Category",
    "Expect",
    "FileRecord",
    "PatientRecord",
    "Planted",
    "Reference",
    "StudyRecord",
    "default_key_path",
    "generate",
    "values_at",
]
