"""A content-addressed, resumable on-disk cache of per-volume embeddings.

One file per volume, named by a key that hashes what the volume *is* (the bytes of its
files, or of its array) together with everything that changes its embedding (the
encoder's fingerprint). Entries are written to a temporary file in the cache folder and
moved into place with :func:`os.replace`, which is atomic: a run killed mid-write leaves at
most a stray ``.tmp-*`` file, never a half-written entry under a real key; such leftovers are
removed when the cache is next opened, once they are older than :data:`STALE_TMP_SECONDS`.
Each entry carries its own key and a SHA-256 of its content, and must hold a 2-D float array:
an entry that is truncated, corrupted, ill-typed, or stored under another key's file name is
ignored and recomputed, never served.
"""

import contextlib
import hashlib
import io
import os
import pickle
import tempfile
import time
import types
from functools import partial
from pathlib import Path

import numpy as np

# Version 2 stores the key in the entry; version-1 entries are recomputed once.
_MAGIC = b"SKFUSION-EMB2\n"
_DIGEST_SIZE = 32
_CHUNK = 1 << 20
_TMP_PREFIX, _SUFFIX = ".tmp-", ".emb"

#: Age (seconds, by modification time) after which a temporary file is taken as left by a
#: killed run and removed. A live writer holds its temporary file for the time it takes to
#: write one volume's embeddings (well under a second to a few seconds); an hour leaves a
#: wide margin for slow shared filesystems and clock skew between the hosts that share one.
STALE_TMP_SECONDS = 3600


def _sha256(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
    return h.hexdigest()


def _update_with_file(h, path):
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def content_hash(cell, files_of_folder):
    """Hash of the content of one cell: array bytes, file bytes, or the series' files.

    Parameters
    ----------
    cell : ndarray, str or os.PathLike
    files_of_folder : callable
        Lists the files of a folder cell exactly as the reader uses them.

    Returns
    -------
    digest : str
    """
    h = hashlib.sha256()
    if isinstance(cell, np.ndarray):
        array = np.ascontiguousarray(cell)
        h.update(f"array {array.dtype.str} {array.shape}".encode())
        h.update(array.tobytes())
        return h.hexdigest()
    path = Path(cell)
    if path.is_dir():
        for file in files_of_folder(path):
            h.update(f"file {file.name} {file.stat().st_size}\n".encode())
            _update_with_file(h, file)
    else:
        h.update(f"file {path.suffix.lower()}\n".encode())
        _update_with_file(h, path)
    return h.hexdigest()


def module_fingerprint(module):
    """Hash of a torch module: its class, its printed structure and every tensor of its state."""
    import torch  # here, so that this module loads without torch (see the cross-process test)

    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}\n{module!r}".encode())
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        h.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        h.update(tensor.reshape(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


def callable_fingerprint(fn, param):
    """Deterministic identity of a user callable (e.g. a slice selector), for cache keys.

    A plain function (lambdas and local functions included) is identified by its module and
    qualified name, its bytecode and constants (recursively), the global names it uses, its
    default arguments and the values captured in its closure; a ``functools.partial`` by
    its function and arguments; any other callable object by its pickled state and its
    class's ``__call__``. Values a function reads from globals or from other functions it
    calls are not part of the identity: after changing those, use a fresh ``cache_dir``.

    Raises
    ------
    ValueError
        If a default, closure value or partial argument cannot be pickled (the identity
        would not be deterministic), naming ``param``.
    """
    h = hashlib.sha256()
    _feed_callable(h, fn, param)
    return h.hexdigest()


def _feed_callable(h, fn, param):
    if isinstance(fn, partial):
        h.update(b"partial")
        _feed_callable(h, fn.func, param)
        h.update(_pickled((fn.args, sorted(fn.keywords.items())), fn, param))
    elif isinstance(fn, types.FunctionType):
        h.update(f"function {fn.__module__}.{fn.__qualname__}".encode())
        _feed_code(h, fn.__code__)
        cells = tuple(c.cell_contents for c in fn.__closure__ or ())
        h.update(_pickled((fn.__defaults__, fn.__kwdefaults__, cells), fn, param))
    elif isinstance(fn, types.MethodType):
        _feed_callable(h, fn.__func__, param)
        h.update(_pickled(fn.__self__, fn, param))
    elif isinstance(fn, types.BuiltinFunctionType):
        h.update(f"builtin {fn.__module__}.{fn.__qualname__}".encode())
    else:
        call = type(fn).__call__
        h.update(_pickled(fn, fn, param))
        if isinstance(call, types.FunctionType):
            _feed_code(h, call.__code__)


def _feed_code(h, code):
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        elif isinstance(const, frozenset):
            h.update(repr(sorted(map(repr, const))).encode())
        else:
            h.update(repr(const).encode())


def _pickled(value, fn, param):
    try:
        return pickle.dumps(value, protocol=4)
    except Exception as exc:
        raise ValueError(
            f"{param}={fn!r} cannot be identified for the cache ({exc}); use a module-level "
            "function or a functools.partial of one with picklable arguments, or set cache_dir=None."
        ) from exc


def cache_key(content, fingerprint):
    """The key of one entry: the hash of a cell's content and of the encoder's fingerprint."""
    return _sha256(content.encode(), b"\0", fingerprint.encode())


def fingerprint_of(params):
    """Hash of a dict of output-changing parameters (values must have a stable ``repr``)."""
    return _sha256(*(f"{k}={params[k]!r}\n" for k in sorted(params)))


class EmbeddingCache:
    """Folder of per-volume embeddings keyed by :func:`cache_key`.

    Opening the cache creates the folder when missing, removes temporary files older than
    :data:`STALE_TMP_SECONDS` (left by killed runs) and checks that a file can be written
    there.

    Parameters
    ----------
    folder : str or os.PathLike
        The encoder's ``cache_dir``.
    ndim : int, default=2
        Dimensions of a valid entry: 2 for per-slice embeddings ``(T, d)``, 3 for the
        preprocessed volumes of :class:`~skfusion.ssl.TimeToEventPretraining`.

    Raises
    ------
    ValueError
        If ``folder`` is an existing file, or cannot be created, listed or written to,
        naming ``cache_dir`` and the path.
    """

    def __init__(self, folder, ndim=2):
        self.folder = Path(folder)
        self.ndim = ndim
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temporaries()
        except (FileExistsError, NotADirectoryError) as exc:
            raise ValueError(
                f"cache_dir={str(folder)!r} is a file (or lies under one), not a folder; "
                "name a folder (it is created when missing)."
            ) from exc
        except OSError as exc:
            raise ValueError(f"cache_dir={str(folder)!r} cannot be used as a cache folder ({exc}).") from exc
        self._check_writable()

    def _check_writable(self):
        """Write and remove a temporary file, so a read-only folder fails now, not after the first volume."""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=_TMP_PREFIX, suffix=_SUFFIX)
        except OSError as exc:
            raise ValueError(
                f"cache_dir={str(self.folder)!r} exists but cannot be written to ({exc}); give a folder "
                "this process may write, or cache_dir=None."
            ) from exc
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)

    def _path(self, key):
        return self.folder / f"{key}{_SUFFIX}"

    def _remove_stale_temporaries(self):
        cutoff = time.time() - STALE_TMP_SECONDS
        for tmp in self.folder.glob(f"{_TMP_PREFIX}*{_SUFFIX}"):
            # Another process may rename or remove the same file meanwhile: housekeeping only.
            with contextlib.suppress(OSError):
                if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    def get(self, key):
        """The stored float32 array (``ndim`` dimensions), or None when the entry is missing or damaged.

        Damaged means: not this format, a checksum mismatch, another key inside, a payload
        that is not a plain ``.npy`` array (object arrays are never unpickled), or an array
        that is not a non-empty ``ndim``-D float array of finite values.
        """
        try:
            blob = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        head = len(_MAGIC) + _DIGEST_SIZE
        body = blob[head:]
        if blob[: len(_MAGIC)] != _MAGIC or hashlib.sha256(body).digest() != blob[len(_MAGIC) : head]:
            return None
        stored_key, _, payload = body.partition(b"\n")
        if stored_key != key.encode():
            return None
        try:
            array = np.load(io.BytesIO(payload), allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return None
        if (
            not isinstance(array, np.ndarray)
            or not np.issubdtype(array.dtype, np.floating)
            or array.ndim != self.ndim
            or 0 in array.shape
            or not np.isfinite(array).all()
        ):
            return None
        return array.astype(np.float32, copy=False)

    def put(self, key, array):
        """Store ``array`` under ``key`` atomically (temporary file, fsync, then os.replace)."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        body = key.encode() + b"\n" + buffer.getvalue()
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=_TMP_PREFIX, suffix=_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_MAGIC + hashlib.sha256(body).digest() + body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
