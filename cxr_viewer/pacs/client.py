"""Open from PACS: search a DICOMweb server for studies (QIDO-RS) and fetch one (WADO-RS), no Qt.

Through ``dicomweb-client`` (`DICOMwebClient`), against any DICOMweb service (Orthanc's plugin, dcm4chee,
a cloud PACS): :func:`search_studies` sends a QIDO-RS ``/studies`` query by patient ID, patient name,
study date range and modality; :func:`retrieve_study` lists the study's instances (QIDO-RS
``/studies/{uid}/instances``) and fetches them one by one (WADO-RS, ``application/dicom`` in the transfer
syntax the server stored, so nothing is transcoded), writing each as ``<SOPInstanceUID>.dcm`` in a
folder, with a progress callback and a cancel flag. The viewer then opens that folder like a dropped
one: the files go through the same readers and budgets as any other file.

Every call is blocking (run it off the GUI thread). Failures are one `PacsError` each, with a message
that names the server and the HTTP status or network error, never a patient attribute. What a search
returns (`StudyMatch`) holds patient data for the dialog's table only; its ``repr`` is redacted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from dicomweb_client.api import DICOMwebClient

__all__ = [
    "PacsConfig",
    "PacsError",
    "StudyMatch",
    "StudyQuery",
    "retrieve_study",
    "search_studies",
]

#: attributes asked for in a study search (QIDO-RS ``includefield``)
_STUDY_FIELDS = (
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
    "AccessionNumber",
)


class PacsError(RuntimeError):
    """A DICOMweb request failed; the message is one line without patient data."""


@dataclass(frozen=True)
class PacsConfig:
    """Where the DICOMweb service is.

    Attributes:
        url: the DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web`` (QIDO-RS, WADO-RS under it).
        timeout: seconds per HTTP request (connect and read).
    """

    url: str
    timeout: float = 30.0


@dataclass(frozen=True)
class StudyQuery:
    """A study search. Empty fields are left out of the query (match anything).

    Attributes:
        patient_id: Patient ID, exact (``*`` wildcards allowed, as QIDO-RS has them).
        patient_name: Patient's Name (``Doe^Jane``; ``*`` and ``?`` wildcards); fuzzy matching is asked
            for, so ``Doe`` may find ``Doe^Jane`` on servers that support it, and ``Doe*`` works
            everywhere. Its ``^`` is sent as ``?`` (see `_QUERY_SAFE`).
        date_from: first study date, ``YYYYMMDD`` ("" for no lower bound).
        date_to: last study date, ``YYYYMMDD`` ("" for no upper bound).
        modality: e.g. ``CR``, ``DX`` (Modalities in Study).
        limit: at most this many studies.
    """

    patient_id: str = ""
    patient_name: str = ""
    date_from: str = ""
    date_to: str = ""
    modality: str = ""
    limit: int = 200

    def filters(self) -> dict[str, str]:
        """The QIDO-RS search filters of this query.

        Raises:
            ValueError: for a date that is not ``YYYYMMDD``.
        """
        out: dict[str, str] = {}
        if self.patient_id.strip():
            out["PatientID"] = self.patient_id.strip()
        if self.patient_name.strip():
            # ^ (family^given) as the wildcard ?, which matches it: see _QUERY_SAFE for why
            out["PatientName"] = self.patient_name.strip().replace("^", "?")
        for label, value in (("from", self.date_from), ("to", self.date_to)):
            v = value.strip()
            if v and not (len(v) == 8 and v.isdigit()):
                raise ValueError(f"study date {label} must be YYYYMMDD, got {v!r}")
        lo, hi = self.date_from.strip(), self.date_to.strip()
        if lo or hi:
            out["StudyDate"] = lo if lo == hi else f"{lo}-{hi}"
        if self.modality.strip():
            out["ModalitiesInStudy"] = self.modality.strip().upper()
        return out


@dataclass(frozen=True)
class StudyMatch:
    """One study found. Patient fields are for display in the window only (never logged).

    Attributes:
        study_uid: Study Instance UID.
        patient_name, patient_id, study_date, description, accession: as the server answered ("" if not).
        modalities: Modalities in Study, e.g. ``("CR",)``.
        instances: Number of Study Related Instances, or None when the server does not say.
    """

    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    description: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ()
    instances: int | None = None
    _extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"StudyMatch(study_uid={self.study_uid!r}, <patient data redacted>)"


#: characters of QIDO-RS values sent as they are, not percent-encoded: the matching wildcards ``*`` and
#: ``?`` and the list separator ``,`` (RFC 3986 allows them in a query). Orthanc 1.10's DICOMweb plugin
#: matches the *undecoded* text: ``PatientName=Doe%2A`` finds nothing where ``PatientName=Doe*`` finds
#: the study. The person-name separator ``^`` cannot be sent raw (urllib3 encodes it), so
#: `StudyQuery.filters` sends it as ``?``, the one-character wildcard, which matches it everywhere.
_QUERY_SAFE = "*?,"


def _session() -> Any:
    """A ``requests`` session that sends `_QUERY_SAFE` characters of the query unencoded.

    dicomweb-client percent-encodes the whole query string itself before it reaches the session; this
    turns ``%2A``, ``%3F`` and ``%2C`` of the query back into ``*``, ``?`` and ``,`` (a literal ``%2A``
    typed by the user was encoded as ``%252A`` and is left alone).
    """
    import re

    import requests

    encoded = re.compile("|".join(f"%{ord(c):02X}" for c in _QUERY_SAFE), re.IGNORECASE)

    class _Session(requests.Session):
        def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            base, sep, query = str(url).partition("?")
            if sep:
                url = base + sep + encoded.sub(lambda m: chr(int(m.group(0)[1:], 16)), query)
            return super().request(method, url, *args, **kwargs)

    return _Session()


def _client(config: PacsConfig) -> DICOMwebClient:
    from dicomweb_client.api import DICOMwebClient

    url = config.url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise PacsError(f"not a DICOMweb address (http:// or https://): {url[:80]!r}")
    _quiet_library_logs()
    client = DICOMwebClient(url=url, session=_session(), timeout=config.timeout)
    # one attempt: a retry loop of exponential waits (1 + 2 + 4 + 8 s) hides an unreachable server
    client.set_http_retry_params(retry=False)
    return client


class _NoAttemptRecords:
    """Drops the ``retrying`` package's per-attempt records: they carry the failed request's exception,
    whose text holds the URL, and the URL holds the query (a patient's name or ID)."""

    def filter(self, record: Any) -> bool:
        return type(record.msg).__name__ != "Attempt"


_LOGS_QUIETED: list[bool] = []


def _quiet_library_logs() -> None:
    """Keep patient data out of logs: dicomweb-client logs each request's URL (with the query) at
    DEBUG, and ``retrying`` logs failed attempts with their exception text (the URL) at WARNING."""
    import logging

    if _LOGS_QUIETED:
        return
    _LOGS_QUIETED.append(True)
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
    logging.getLogger("retrying").addFilter(_NoAttemptRecords())


def _failure(config: PacsConfig, what: str, exc: BaseException) -> PacsError:
    """A one-line message: the server, what was asked, and the HTTP status or network error."""
    import requests

    where = config.url.strip().rstrip("/")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        reason = f"HTTP {exc.response.status_code} {exc.response.reason or ''}".strip()
    elif isinstance(exc, requests.ConnectionError):
        reason = "cannot connect (is the server running, is the address right?)"
    elif isinstance(exc, requests.Timeout):
        reason = f"no answer within {config.timeout:g} s"
    else:
        reason = type(exc).__name__
    return PacsError(f"{what} failed at {where}: {reason}")


def _value(item: dict[str, Any], tag: str) -> list[Any]:
    """The ``Value`` list of a DICOM JSON attribute (PS3.18 F.2), [] when absent."""
    attr = item.get(tag) or {}
    value = attr.get("Value") if isinstance(attr, dict) else None
    return list(value) if isinstance(value, list) else []


def _text(item: dict[str, Any], tag: str) -> str:
    vals = _value(item, tag)
    if not vals:
        return ""
    v = vals[0]
    if isinstance(v, dict):  # a person name: {"Alphabetic": "Doe^John"}
        return str(v.get("Alphabetic", ""))
    return str(v)


def search_studies(config: PacsConfig, query: StudyQuery) -> list[StudyMatch]:
    """QIDO-RS study search.

    Returns:
        The studies found, in the server's order (at most ``query.limit``).

    Raises:
        ValueError: for a malformed query (a date that is not YYYYMMDD).
        PacsError: when the server cannot be reached or answers with an error.
    """
    filters = query.filters()
    client = _client(config)
    try:
        found = client.search_for_studies(
            search_filters=filters,
            fields=list(_STUDY_FIELDS),
            limit=max(1, int(query.limit)),
            fuzzymatching=True if "PatientName" in filters else None,
        )
    except Exception as exc:
        raise _failure(config, "study search", exc) from None
    out = []
    for item in found:
        uid = _text(item, "0020000D")
        if not uid:
            continue
        n = _value(item, "00201208")
        out.append(
            StudyMatch(
                study_uid=uid,
                patient_name=_text(item, "00100010"),
                patient_id=_text(item, "00100020"),
                study_date=_text(item, "00080020"),
                description=_text(item, "00081030"),
                accession=_text(item, "00080050"),
                modalities=tuple(str(m) for m in _value(item, "00080061")),
                instances=int(n[0]) if n and str(n[0]).isdigit() else None,
            )
        )
    return out


def retrieve_study(
    config: PacsConfig,
    study_uid: str,
    dest: str | os.PathLike[str],
    *,
    on_progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[Path]:
    """Fetch every instance of a study (WADO-RS) into ``dest`` as ``<SOPInstanceUID>.dcm`` files.

    Args:
        config: the server.
        study_uid: the study (from `search_studies`).
        dest: the folder (created when missing); a file already there for an instance is replaced.
        on_progress: called with ``(done, total)`` after the listing (``done`` = 0) and after each file.
        cancelled: polled before each instance; when it returns True the fetch stops and the files
            fetched so far are returned.

    Returns:
        The files written, in the server's order.

    Raises:
        PacsError: when the listing or an instance cannot be fetched (files written before stay).
    """
    client = _client(config)
    try:
        listed = client.search_for_instances(
            study_instance_uid=study_uid,
            fields=["SeriesInstanceUID", "SOPInstanceUID"],
            get_remaining=True,
        )
    except Exception as exc:
        raise _failure(config, "listing the study's instances", exc) from None
    refs = [(_text(i, "0020000E"), _text(i, "00080018")) for i in listed]
    refs = [(se, sop) for se, sop in refs if se and sop]
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    if on_progress is not None:
        on_progress(0, len(refs))
    out: list[Path] = []
    for n, (series_uid, sop_uid) in enumerate(refs, 1):
        if cancelled is not None and cancelled():
            break
        try:
            ds = client.retrieve_instance(
                study_uid, series_uid, sop_uid, media_types=(("application/dicom", "*"),)
            )
        except Exception as exc:
            raise _failure(config, f"retrieving instance {n} of {len(refs)}", exc) from None
        out.append(_save(ds, folder, sop_uid))
        if on_progress is not None:
            on_progress(n, len(refs))
    return out


def _save(ds: Any, folder: Path, sop_uid: str) -> Path:
    """Write one retrieved data set as ``<SOPInstanceUID>.dcm`` (whole or not at all)."""
    safe = "".join(ch for ch in sop_uid if ch.isdigit() or ch == ".")[:64] or "instance"
    dest = folder / f"{safe}.dcm"
    tmp = folder / f"{dest.name}.{secrets.token_hex(6)}.part"  # 0666 & ~umask, unlike mkstemp's 0600
    try:
        with open(tmp, "xb") as fh:
            ds.save_as(fh, enforce_file_format=True)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return dest
